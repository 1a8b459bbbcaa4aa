"""From a checkout's environment: export all three families into a fresh directory outside the checkout with
the CLI, serve that directory with the CLI, and every route answers with real results over HTTP."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.user_paths.support import Sources, assert_every_route_answers, export_all, served, user_env
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
    env = user_env(tmp_path)

    export_all(cli, repository, user_sources, elsewhere, env)
    for entry in ("ocr", "faces", "clip_image", "clip_text"):
        assert (repository / entry / "config.pbtxt").is_file(), f"export wrote no {entry} into {repository}"

    with served(cli, repository, elsewhere, env, tmp_path / "serve.log") as url:
        assert_every_route_answers(url, user_sources, fixtures)
