"""mt-photos-triton: the MT Photos AI API served by NVIDIA Triton Inference Server."""

__version__ = "0.1.0"
