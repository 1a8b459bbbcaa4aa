"""`mt-photos-triton export`: fetch the models users choose, make them batchable, record their contract in
the configs, verify them, and write them into the model repository. One module per family."""
