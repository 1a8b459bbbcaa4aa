"""`mt-photos-triton bench predict --quick` end to end: the CLI exports tiny stand-ins, serves them (embedded Triton,
the adapter in its own process with IMMICH_ML=true), checks that /predict and the MT routes agree and prints a
row per case and concurrency with both rates and their ratio."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mt_photos_triton.bench.predict import Disagreement, check_clip, check_faces
from tests.harness import ROOT

pytestmark = pytest.mark.e2e

ROW = re.compile(r"^(clip 1280x960|faces 1 face|faces 6 faces)\s+(\d+) \|\s+([\d.]+)\s+[\d.]+ \|\s+([\d.]+)\s+[\d.]+ \|"
                 r"\s+([\d.]+)x", re.MULTILINE)


def bench(fixtures: Path, *options: str) -> str:
    env = {**os.environ, "MT_PHOTOS_FIXTURES": str(fixtures)}
    command = [sys.executable, "-m", "mt_photos_triton.cli", "bench", "predict", "--quick", "--requests", "4",
               "--rounds", "2", "--warmup", "1", *options]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_quick_bench_compares_predict_with_the_mt_routes(fixtures: Path) -> None:
    if not sorted((fixtures / "models" / "scrfd").glob("det_*.onnx")):
        pytest.skip(f"no SCRFD detector under {fixtures}/models/scrfd")
    out = bench(fixtures)
    assert re.search(r"same answers: clip 1280x960: 512-d vectors, max \|Δ\| \S+", out), out
    assert "same answers: faces 1 face: 1 face(s) on both" in out, out
    assert re.search(r"same answers: faces 6 faces: [1-9]\d* face\(s\) on both", out), out
    rows = {(name, int(level)): (float(mt), float(predict), float(ratio))
            for name, level, mt, predict, ratio in ROW.findall(out)}
    cases = ("clip 1280x960", "faces 1 face", "faces 6 faces")
    assert set(rows) == {(case, level) for case in cases for level in (1, 4)}, out
    for mt, predict, ratio in rows.values():
        assert mt > 0 and predict > 0 and ratio == pytest.approx(predict / mt, abs=0.01)


def test_without_fixtures_faces_are_skipped_with_a_message(tmp_path: Path) -> None:
    out = bench(tmp_path, "--concurrency", "1")
    assert f"faces skipped: no SCRFD detector under {tmp_path}/models/scrfd" in out, out
    assert {name for name, *_ in ROW.findall(out)} == {"clip 1280x960"}, out


def test_a_disagreement_stops_the_bench() -> None:
    vector = [0.25, -0.5, 0.125]
    assert "max |Δ| 0.0e+00" in check_clip("clip", lambda: vector, lambda: list(vector))
    with pytest.raises(Disagreement, match="max"):
        check_clip("clip", lambda: vector, lambda: [0.25, -0.5, 0.125 + 2e-6])
    with pytest.raises(Disagreement, match="dims 3/2"):
        check_clip("clip", lambda: vector, lambda: vector[:2])
    with pytest.raises(Disagreement, match="found 2 faces, /predict 1"):
        check_faces("faces", lambda: 2, lambda: 1)
