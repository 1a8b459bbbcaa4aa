"""Recogniser width buckets (the `ocr` GPU variant): read only where the config names them, each batch padded on
the right with the zeros RapidOCR pads a narrow crop with, and without them today's shapes, value for value."""

from __future__ import annotations

import numpy as np
import pytest

from export import ocr_configs
from export.configs import GPU_FP32_VARIANT, GPU_VARIANT
from export.ocr_gpu import REC_WIDTH_BUCKETS, entry_variants
from mt_photos_triton.families import FAMILIES
from mt_photos_triton.pipelines.ocr_parameters import REC_WIDTH_BUCKETS as PARAMETER, OcrParameters, WidthBuckets
from mt_photos_triton.pipelines.ocr_recognition import recognition_batches

PARAMS = OcrParameters.from_config({k: str(v) for k, v in ocr_configs.PIPELINE_PARAMETERS.items()})


def _crops(widths: list[int], height: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (height, w, 3), dtype=np.uint8) for w in widths]


def test_the_cpu_config_names_no_buckets_and_the_gpu_variant_does() -> None:
    entry = ocr_configs.model_configs(FAMILIES["ocr"].default_model)
    cpu = {k: v.string_value for k, v in entry[ocr_configs.ENTRY_MODEL].parameters.items()}
    assert WidthBuckets.from_config(cpu) is None
    variants = entry_variants(entry[ocr_configs.ENTRY_MODEL])
    for name in (GPU_VARIANT, GPU_FP32_VARIANT):
        gpu = {k: v.string_value for k, v in variants[name].parameters.items()}
        assert WidthBuckets.from_config(gpu) == REC_WIDTH_BUCKETS
        assert {k: v for k, v in gpu.items() if k not in (PARAMETER, "recognizer_rows_per_call")} == {
            k: v for k, v in cpu.items() if k != "recognizer_rows_per_call"
        }, "the GPU variant changes nothing else of the pipeline's numbers"


@pytest.mark.parametrize(
    ("width", "padded"), [(1, 320), (320, 320), (321, 400), (3200, 3200), (3201, 6400), (9000, 9600)]
)
def test_a_width_goes_up_to_the_next_bucket_and_beyond_the_largest_to_its_multiples(width: int, padded: int) -> None:
    assert REC_WIDTH_BUCKETS.width(width) == padded


@pytest.mark.parametrize("text", ["", "640,320", "320,320", "0,320"])
def test_bad_bucket_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WidthBuckets.from_config({PARAMETER: text})


def test_batches_are_padded_to_their_bucket_with_zeros_and_keep_their_pixels() -> None:
    crops = _crops([40, 200, 330, 900, 2000])  # aspect ratios from 1.3 to 67
    today = recognition_batches(crops, PARAMS)
    bucketed = recognition_batches(crops, PARAMS, REC_WIDTH_BUCKETS)
    assert [b.indices for b in today] == [b.indices for b in bucketed]
    for plain, padded in zip(today, bucketed):
        width = plain.pixels.shape[-1]
        assert padded.pixels.shape[-1] == REC_WIDTH_BUCKETS.width(width)
        np.testing.assert_array_equal(padded.pixels[..., :width], plain.pixels)
        assert not padded.pixels[..., width:].any()


def test_without_buckets_the_batches_are_todays() -> None:
    crops = _crops([40, 200, 330, 900])
    widths = [b.pixels.shape[-1] for b in recognition_batches(crops, PARAMS)]
    ratios = sorted(c.shape[1] / c.shape[0] for c in crops)
    # RapidOCR: rec_height x the widest member's ratio, at least rec_min_width (one batch of rec_batch_size here)
    assert widths == [int(PARAMS.rec_height * max(PARAMS.rec_min_width / PARAMS.rec_height, ratios[-1]))]
