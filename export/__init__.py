"""`mt-photos-triton export`: fetch the models users choose, make them batchable, record their contract in
the configs, verify them, and write them into the model repository.

Each mechanism once: `sources` (cache, downloads with a progress bar, pinned files, Hugging Face, `--from`),
`record` (what was exported, up to date or not), `install` (the committed python models), `onnx_graph` (tensor
names, constants, shapes, saving), `batching` / `batch_layout` (a verified batch axis) and `configs` (one builder,
the queue and instance policy). A family's module holds its specifics only: `ocr`, `faces` (+ `faces_graph`),
`clip` (+ `clip_graph`, `clip_configs`)."""
