"""Pure pre/post-processing (numpy, Pillow, OpenCV): no Triton import, so tests use the very same code."""
