"""Per-request OCR options (immich's detection minScore / maxResolution, recognition minScore) and what the
`ocr` model returns for immich's answer (box scores, reading order, image size)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from export.ocr_configs import PIPELINE_PARAMETERS
from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines.ocr import OcrJob, select_texts
from mt_photos_triton.pipelines.ocr_detection import DBPostProcess, detection_input
from mt_photos_triton.pipelines.ocr_parameters import OcrOptions, OcrParameters

PARAMS = OcrParameters.from_config({key: str(value) for key, value in PIPELINE_PARAMETERS.items()})


def test_no_option_keeps_the_config_numbers() -> None:
    assert OcrOptions().applied(PARAMS) is PARAMS


def test_options_replace_only_what_they_set() -> None:
    params = OcrOptions(box_threshold=0.6, det_limit_side=1024, text_score_threshold=0.8).applied(PARAMS)
    assert (params.box_threshold, params.det_limit_side, params.text_score_threshold) == (0.6, 1024, 0.8)
    assert dataclasses.replace(params, box_threshold=PARAMS.box_threshold, det_limit_side=PARAMS.det_limit_side,
                               text_score_threshold=PARAMS.text_score_threshold) == PARAMS
    assert OcrOptions(text_score_threshold=0.8).applied(PARAMS).box_threshold == PARAMS.box_threshold


@pytest.mark.parametrize(
    "options",
    [OcrOptions(box_threshold=1.5), OcrOptions(text_score_threshold=-0.1),
     OcrOptions(det_limit_side=8), OcrOptions(det_limit_side=20000)],
)
def test_options_out_of_range_are_refused(options: OcrOptions) -> None:
    with pytest.raises(PipelineError) as raised:
        options.applied(PARAMS)
    assert raised.value.code == INVALID_INPUT


def test_max_resolution_sets_the_detector_input_size() -> None:
    image = Image.new("RGB", (2000, 1000), "white")
    assert detection_input(image, PARAMS).shape == (3, 736, 1472)
    larger = OcrOptions(det_limit_side=960).applied(PARAMS)
    assert detection_input(image, larger).shape == (3, 960, 1920)


def test_box_threshold_per_call() -> None:
    probability = np.zeros((64, 64), dtype=np.float32)
    probability[10:30, 5:60] = 0.55  # one text-like blob, scoring about 0.52 over its (dilated) box
    postprocess = DBPostProcess(PARAMS)
    boxes, scores = postprocess(probability, 64, 64)
    assert len(boxes) == 1 and 0.5 < scores[0] < 0.55
    assert len(postprocess(probability, 64, 64, box_threshold=scores[0] + 0.01)[0]) == 0
    assert len(postprocess(probability, 64, 64, box_threshold=scores[0] - 0.01)[0]) == 1
    assert len(postprocess(probability, 64, 64)[0]) == 1, "the configured threshold is untouched"


def test_select_texts_keeps_box_scores_and_reading_order() -> None:
    # reading order (as `OcrJob.detected` gives them): line 1 is x=0 then x=50 (y 14 and 10), line 2 below
    boxes = np.array(
        [[[0, 14], [40, 14], [40, 30], [0, 30]], [[50, 10], [90, 10], [90, 30], [50, 30]],
         [[0, 60], [40, 60], [40, 80], [0, 80]]], np.float32,
    )
    recognised = [("left", 0.95), ("right", 0.99), ("below", 0.5)]
    result = select_texts(boxes, recognised, PARAMS, [0.7, 0.8, 0.9])
    assert result.texts == ["right", "left"], "sorted by top-left y, as mt-photos-ml"
    assert result.box_scores.tolist() == pytest.approx([0.8, 0.7])
    assert result.reading_order.tolist() == [1, 0]
    in_reading_order = [result.texts[i] for i in np.argsort(result.reading_order)]
    assert in_reading_order == ["left", "right"], "immich's order"
    lower = select_texts(boxes, recognised, dataclasses.replace(PARAMS, text_score_threshold=0.4), [0.7, 0.8, 0.9])
    assert lower.texts == ["right", "left", "below"] and lower.reading_order.tolist() == [1, 0, 2]


def test_a_job_carries_its_own_numbers_and_its_image_size() -> None:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), "white").save(buffer, format="PNG")
    params = OcrOptions(det_limit_side=64).applied(PARAMS)
    job = OcrJob.start(buffer.getvalue(), params)
    assert job.params == params and job.detector_input is not None and job.detector_input.shape == (3, 64, 96)
    assert job.result().image_size == (300, 200)
