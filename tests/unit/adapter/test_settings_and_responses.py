"""Settings from the environment, and the mapping of failures to fixed `msg` bodies."""

from __future__ import annotations

import json

import pytest

from adapter import Settings
from adapter.backend import BackendUnavailable, InferenceFailed, ModelUnavailable
from adapter.responses import (
    MSG_INTERNAL,
    MSG_INVALID_FACE_IMAGE,
    MSG_INVALID_IMAGE,
    MSG_SERVER_UNAVAILABLE,
    MSG_TOO_LARGE,
    backend_error_response,
    json_bytes,
)
from mt_photos_triton import errors


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


def _msg(error: Exception, **kwargs: str) -> str:
    return json.loads(backend_error_response(error, **kwargs).content)["msg"]


def test_failures_map_to_fixed_messages() -> None:
    assert _msg(BackendUnavailable("x")) == MSG_SERVER_UNAVAILABLE
    assert _msg(InferenceFailed("ocr", errors.INVALID_IMAGE, "/secret/path")) == MSG_INVALID_IMAGE
    assert (
        _msg(InferenceFailed("faces", errors.INVALID_IMAGE, "x"), invalid_image_msg=MSG_INVALID_FACE_IMAGE)
        == MSG_INVALID_FACE_IMAGE
    )
    assert _msg(InferenceFailed("ocr", errors.IMAGE_TOO_LARGE, "x")) == MSG_TOO_LARGE
    assert _msg(InferenceFailed("ocr", None, "Traceback ... /opt/x.py")) == MSG_INTERNAL
    assert _msg(ModelUnavailable("clip_image")) == "model 'clip_image' is not available: run `mt-photos-triton export clip`"


def test_error_codes_survive_tritons_prefixes() -> None:
    message = "[request id: <id_unknown>] in ensemble 'clip_image', invalid_image: cannot identify image"
    assert errors.parse_code(message) == errors.INVALID_IMAGE
    assert errors.parse_code("something else") is None
