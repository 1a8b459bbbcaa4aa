"""The built wheel, installed with the `embedded` extra into a fresh virtual environment: from a directory
outside the checkout, `export` every family into a directory of one's own and `serve` it.

Slow (a wheel build and an install of the extra's dependencies from pip's cache: minutes on a small machine);
one environment serves the whole session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.user_paths.support import Sources, assert_every_route_answers, export_all, served, user_env
from tests.harness import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INSTALL_TIMEOUT_S = 1200


def run(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, f"{command} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `mt-photos-triton[embedded]` from the wheel this checkout builds; its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(ROOT)], work)
    wheel = next((work / "dist").glob("mt_photos_triton-*.whl"))
    run([sys.executable, "-m", "venv", str(work / "venv")], work)
    bin_dir = work / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[embedded]"], work)
    return bin_dir


def test_the_wheel_installed_with_embedded_exports_and_serves_every_family(
    installed: Path, user_sources: Sources, fixtures: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    location = run([str(installed / "python"), "-c", "import mt_photos_triton; print(mt_photos_triton.__file__)"],
                   elsewhere)
    assert not Path(location.strip()).is_relative_to(ROOT), f"the installed package is the checkout's: {location}"
    repository = tmp_path / "models"
    env = user_env(tmp_path)

    export_all(installed / "mt-photos-triton", repository, user_sources, elsewhere, env)
    with served(installed / "mt-photos-triton", repository, elsewhere, env, tmp_path / "serve.log") as url:
        assert_every_route_answers(url, user_sources, fixtures)
