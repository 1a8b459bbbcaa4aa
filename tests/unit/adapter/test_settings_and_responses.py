"""Settings from the environment, and the one mapping of failures to fixed `msg` bodies."""

from __future__ import annotations

import pytest

from adapter import Settings
from adapter.backend import BackendUnavailable, InferenceFailed, ModelUnavailable, Overloaded
from adapter.inference import Route, failure_of
from adapter.responses import (
    MSG_BUSY,
    MSG_INTERNAL,
    MSG_INVALID_FACE_IMAGE,
    MSG_INVALID_IMAGE,
    MSG_SERVER_UNAVAILABLE,
    MSG_TOO_LARGE,
    json_bytes,
)
from mt_photos_triton import errors
from mt_photos_triton.pipelines.images import MAX_PIXELS

OCR = Route("/ocr", "ocr", ())
FACES = Route("/represent", "faces", (), invalid_image_msg=MSG_INVALID_FACE_IMAGE)


def test_settings_read_their_variables() -> None:
    settings = Settings.from_env(
        {"API_AUTH_KEY": "k", "TRITON_URL": "triton:8000", "HTTP_PORT": "9000", "FACE_MIN_SCORE": "0.5"}
    )
    assert (settings.api_auth_key, settings.triton_url, settings.http_port, settings.face_min_score) == (
        "k", "triton:8000", 9000, 0.5,
    )
    assert not settings.uses_default_key
    assert Settings.from_env({}).uses_default_key


def test_explicit_overrides_win_and_none_is_ignored() -> None:
    settings = Settings.from_env({"HTTP_PORT": "9000"}, http_port=None, triton_url="x:1")
    assert settings.http_port == 9000 and settings.triton_url == "x:1"


def test_bad_numbers_are_reported_with_the_variable_name() -> None:
    with pytest.raises(ValueError, match="HTTP_PORT"):
        Settings.from_env({"HTTP_PORT": "eighty"})


def test_json_is_compact_raw_utf8_with_python_floats() -> None:
    body = {"texts": ["正品促销"], "e": [-1.25e-05, 0.33333334, 12.0]}
    assert json_bytes(body) == '{"texts":["正品促销"],"e":[-1.25e-05,0.33333334,12.0]}'.encode()


def _mapped(error: Exception, route: Route = OCR) -> tuple[str, str]:
    failure = failure_of(error, route)
    return failure.reason, failure.msg


def test_failures_map_to_fixed_messages() -> None:
    assert _mapped(BackendUnavailable("x")) == ("server_unavailable", MSG_SERVER_UNAVAILABLE)
    assert _mapped(InferenceFailed("ocr", errors.INVALID_IMAGE, "/secret/path")) == ("invalid_image", MSG_INVALID_IMAGE)
    assert _mapped(InferenceFailed("faces", errors.INVALID_IMAGE, "x"), FACES) == ("invalid_image", MSG_INVALID_FACE_IMAGE)
    assert _mapped(InferenceFailed("ocr", errors.IMAGE_TOO_LARGE, "x")) == ("too_large", MSG_TOO_LARGE)
    assert _mapped(InferenceFailed("ocr", None, "Traceback ... /opt/x.py")) == ("internal", MSG_INTERNAL)
    assert _mapped(ModelUnavailable("clip_image")) == (
        "model_unavailable", "model 'clip_image' is not available: run `mt-photos-triton export clip`")
    assert _mapped(Overloaded("64 in flight")) == ("busy", MSG_BUSY)


def test_header_refusals_and_unexpected_errors_map_the_same_way_on_every_route() -> None:
    for route in (OCR, FACES):
        assert _mapped(errors.PipelineError(errors.IMAGE_TOO_LARGE, "x"), route) == ("too_large", MSG_TOO_LARGE)
        assert _mapped(errors.PipelineError(errors.INVALID_IMAGE, "x"), route) == ("invalid_image", route.invalid_image_msg)
        assert _mapped(KeyError("embeddings"), route) == ("internal", MSG_INTERNAL)


def test_settings_hold_no_model_names_and_bound_the_pixel_budget() -> None:
    names = {"OCR_MODEL_NAME", "CLIP_VISUAL_MODEL_NAME", "FACE_RECOGNITION_MODEL_NAME"}
    assert not any(name.lower() in vars(Settings()) for name in names)
    assert Settings.from_env({"MAX_IMAGE_PIXELS": "60000000"}).max_image_pixels == 60_000_000
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        Settings.from_env({"MAX_IMAGE_PIXELS": str(MAX_PIXELS + 1)})
    with pytest.raises(ValueError, match="MAX_PIXELS_IN_FLIGHT"):
        Settings.from_env({"MAX_PIXELS_IN_FLIGHT": "0"})


def test_error_codes_survive_tritons_prefixes() -> None:
    message = "[request id: <id_unknown>] in ensemble 'clip_image', invalid_image: cannot identify image"
    assert errors.parse_code(message) == errors.INVALID_IMAGE
    assert errors.parse_code("something else") is None
