"""The upstream references the parity tests and benches compare against, and the stand-in models they build ([reference] extra)."""
