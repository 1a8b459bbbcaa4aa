"""Reading immich's `entries` (adapter/routes/immich.py): the shapes immich's server sends, and what is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adapter.routes import immich


def test_the_server_defaults() -> None:
    (clip,) = immich.parse_entries(json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}))
    assert clip.route.model == "clip_image" and not clip.needs_text
    (text,) = immich.parse_entries(json.dumps({"clip": {"textual": {"modelName": "m", "options": {"language": "de"}}}}))
    assert text.route.model == "clip_text" and text.needs_text and text.option("textual", "language") == "de"
    faces = {"facial-recognition": {"detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
                                    "recognition": {"modelName": "buffalo_l"}}}
    (task,) = immich.parse_entries(json.dumps(faces))
    assert task.route.model == "faces" and immich.task_inputs(task)["min_score"].tolist() == [[pytest.approx(0.7)]]


def test_ocr_options_become_the_models_inputs() -> None:
    entries = {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5, "maxResolution": 736}},
                       "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.8}}}}
    (task,) = immich.parse_entries(json.dumps(entries))
    inputs = immich.task_inputs(task)
    assert inputs["max_resolution"].dtype == np.int32 and inputs["max_resolution"].tolist() == [[736]]
    assert inputs["box_threshold"].tolist() == [[0.5]] and inputs["min_text_score"].tolist() == [[pytest.approx(0.8)]]
    bare = {"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}, "recognition": {"modelName": "PP-OCRv5_mobile"}}}
    assert immich.task_inputs(immich.parse_entries(json.dumps(bare))[0]) == {}, "the config's numbers"


@pytest.mark.parametrize("raw", ["{", "null", "[]", "{}", '{"clip": {}}', '{"clip": {"visual": {"modelName": 1}}}',
                                 '{"x": {"visual": {"modelName": "m"}}}', '{"clip": {"visual": {"modelName": "m", "options": 2}}}'])
def test_invalid_entries(raw: str) -> None:
    with pytest.raises(immich.Refused) as refused:
        immich.parse_entries(raw)
    assert (refused.value.status, refused.value.detail) == (422, "Invalid request format.")


def test_model_names_as_immich_cleans_them() -> None:
    assert immich.clean_name("immich-app/ViT-B-32__openai") == "ViT-B-32__openai"
    assert immich.clean_name("a:b.c") == "a_bc"
    ocr = immich.parse_entries(json.dumps({"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"},
                                                   "recognition": {"modelName": "CH__PP-OCRv5_mobile"}}}))[0]
    immich.refuse_other_model(ocr, "PP-OCRv5_mobile")
    latin = immich.parse_entries(json.dumps({"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"},
                                                     "recognition": {"modelName": "LATIN__PP-OCRv5_mobile"}}}))[0]
    with pytest.raises(immich.Refused, match="mt-photos-triton export ocr --model LATIN__PP-OCRv5_mobile"):
        immich.refuse_other_model(latin, "PP-OCRv5_mobile")
