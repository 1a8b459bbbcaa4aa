"""The GPU parts of the ocr family's export: the recogniser's TensorRT profile and the `ocr` model's GPU variant,
which pads recogniser batches to the width buckets that profile spans (docs/gpu.md).

The detector is not padded and stays on the CUDA provider: PP-OCRv5's detector pools every feature map globally
(10 GlobalAveragePool nodes, squeeze-and-excitation), so padding changes what it sees everywhere, and one TensorRT
profile over the photo sizes it is sent (sides up to 10000 px, both orientations) would be sized for the largest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mt_photos_triton.pipelines.ocr_parameters import WidthBuckets

if TYPE_CHECKING:
    from mt_photos_triton.repository import ModelConfig

# Recogniser batch widths on a GPU. A batch is as wide as rec_height x its widest crop's aspect ratio, at least
# rec_min_width (320); steps of about a quarter keep the padding small, and 3200 px (a line 66 times as wide as
# high) holds all but the longest lines. Wider batches go to multiples of 3200: outside the profile (docs/gpu.md).
REC_WIDTH_BUCKETS = WidthBuckets((320, 400, 480, 640, 800, 960, 1280, 1600, 1920, 2560, 3200))
# Recogniser rows per call on a GPU (four of the pipeline's batches of six); the profile's largest batch. TensorRT
# sizes an engine's memory for the profile's largest shape: 24 x 3 x 48 x 3200 needs ~2.3 GiB by onnxruntime's
# CPU arena peak (16 x 48 x 1280 took 624 MiB), not measured on a GPU.
GPU_REC_ROWS_PER_CALL = 24


def rec_profile(rec: ModelConfig) -> dict[str, str]:
    """The recogniser's TensorRT profile (trt_profile_min/opt/max_shapes): one row of the narrowest bucket up to
    GPU_REC_ROWS_PER_CALL rows of the widest, optimised for full calls of the narrowest (most lines are short)."""
    (tensor,) = rec.input
    channels, height, _ = tensor.dims
    shapes = {
        "trt_profile_min_shapes": (1, REC_WIDTH_BUCKETS.widths[0]),
        "trt_profile_opt_shapes": (GPU_REC_ROWS_PER_CALL, REC_WIDTH_BUCKETS.widths[0]),
        "trt_profile_max_shapes": (GPU_REC_ROWS_PER_CALL, REC_WIDTH_BUCKETS.widths[-1]),
    }
    return {key: f"{tensor.name}:{rows}x{channels}x{height}x{width}" for key, (rows, width) in shapes.items()}


def entry_variants(entry: ModelConfig) -> dict[str, ModelConfig]:
    """The `ocr` model's GPU variants (`gpu`, `gpu-fp32`: the same; the python model runs on the CPU either
    way): its config with the width buckets and the recogniser's rows per call raised to the profile's batch."""
    from export.configs import GPU_FP32_VARIANT, GPU_VARIANT, set_parameters
    from mt_photos_triton.repository import ModelConfig

    gpu = ModelConfig()
    gpu.CopyFrom(entry)
    set_parameters(gpu, {**REC_WIDTH_BUCKETS.as_config(), "recognizer_rows_per_call": GPU_REC_ROWS_PER_CALL})
    return {GPU_VARIANT: gpu, GPU_FP32_VARIANT: gpu}
