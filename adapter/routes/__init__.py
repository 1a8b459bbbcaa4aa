"""MT Photos routes, one module per model family; each exports HANDLERS."""
