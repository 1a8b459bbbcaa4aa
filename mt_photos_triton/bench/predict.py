"""`mt-photos-triton bench predict`: immich's `/predict` next to the MT Photos route it shares models with.

One server (the embedded Triton, the adapter in its own process with IMMICH_ML=true), both families exported
into one scratch repository with the same stand-ins as `bench clip` and `bench faces` (full-size random
weights: ViT-B/32 at 224; the largest SCRFD of the fixtures and an IResNet-50 recogniser). For each case the
two routes run the same Triton model on the same image bytes, in alternating rounds (the order swapped every
round, so both see the same background load on a shared machine): CLIP visual (`/clip/img` vs `/predict`
`{"clip": {"visual": ...}}`) and faces (`/represent` vs `/predict` facial-recognition at the MT routes' face
threshold). Printed: images/s of each, p50 latency, and the ratio /predict ÷ MT route (≈ 1: immich's protocol
adds no cost). The answers are checked to agree first (CLIP vectors |Δ| ≤ 1e-6, the same face counts).
`--quick` uses tiny stand-ins (a 32-px CLIP, the smallest SCRFD, a tiny recogniser) for a smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mt_photos_triton.bench import clip, faces
from mt_photos_triton.bench.memory import Sources, report_for, served_tree
from mt_photos_triton.procfs import TreeMemory

CONCURRENCY = (1, 4)
KEY = clip.KEY
FACE_MIN_SCORE = 0.7  # immich's default detection minScore; the MT route is set to it too (FACE_MIN_SCORE)
CLIP_TOLERANCE = 1e-6
QUICK_CLIP_MODEL = "ViT-B-32__openai"  # immich's default CLIP name, for the tiny stand-in
FACES_NAME = "buffalo_l"

Call = Callable[[], Any]


class Disagreement(RuntimeError):
    """The two routes answered differently: a bench of two different computations would mean nothing."""


# ------------------------------------------------------------------------------------------- models


def quick_clip(workdir: Path) -> Path:
    """A tiny CLIP stand-in with the default model's 512-d output, exported into workdir/repository."""
    from export.clip import MODEL_DIMS, export
    from mt_photos_triton.reference.clip_standins import StandInSpec, write_immich_layout

    source = write_immich_layout(workdir / "clip-stand-in", StandInSpec(embed_dim=MODEL_DIMS[QUICK_CLIP_MODEL]))
    repository = workdir / "repository"
    export(repository, QUICK_CLIP_MODEL, str(source), force=True)
    return repository


def faces_pack(workdir: Path, quick: bool) -> Path | None:
    """The faces pack: bench faces' (largest SCRFD + IResNet-50), or with `quick` the smallest SCRFD of the
    fixtures and a tiny recogniser; None (faces skipped) where the fixtures hold no SCRFD."""
    from mt_photos_triton.reference.arcface_standin import build_tiny

    detectors = sorted((faces.fixtures_dir() / "models" / "scrfd").glob("det_*.onnx"), key=lambda p: p.stat().st_size)
    if not detectors:
        return None
    if not quick:
        return faces.build_pack(workdir / "faces-pack", faces.largest_detector())
    pack = workdir / "faces-pack"
    (pack / "detection").mkdir(parents=True, exist_ok=True)
    shutil.copy(detectors[0], pack / "detection" / "model.onnx")
    build_tiny(pack / "recognition" / "model.onnx")
    return pack


def prepare(workdir: Path, quick: bool) -> tuple[Path, bool]:
    """One repository with CLIP and (where the fixtures allow) faces exported; whether faces are in it."""
    from export import faces as faces_export

    repository = quick_clip(workdir) if quick else clip.prepare(workdir)[1]
    pack = faces_pack(workdir, quick)
    if pack is None:
        print(f"faces skipped: no SCRFD detector under {faces.fixtures_dir()}/models/scrfd "
              "(set MT_PHOTOS_FIXTURES to the licensed fixtures)", flush=True)
        return repository, False
    faces_export.export(repository, FACES_NAME, str(pack), force=True)
    return repository, True


def served_name(repository: Path, model: str) -> str:
    """The model name export wrote into an entry model's config (what /predict must be asked for)."""
    from mt_photos_triton.families import SERVED_MODEL_PARAMETER
    from mt_photos_triton.repository import parameter, read_config

    name = parameter(read_config(repository / model), SERVED_MODEL_PARAMETER)
    if not name:
        raise SystemExit(f"{model}: no {SERVED_MODEL_PARAMETER} parameter in its config")
    return name


@contextlib.contextmanager
def serving(repository: Path) -> Iterator[str]:
    """The embedded Triton on `repository` and the adapter (own process, /predict on); yields its URL."""
    from mt_photos_triton.bench.servers import adapter_process
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    env = {"IMMICH_ML": "true", "FACE_MIN_SCORE": str(FACE_MIN_SCORE)}
    with EmbeddedTriton(repository=repository, models=None, ports={"http": 0, "grpc": 0, "metrics": 0}) as triton:
        with adapter_process(triton.http_url, KEY, clip.START_TIMEOUT_S, env=env) as url:
            yield url


# -------------------------------------------------------------------------------------------- cases


def clip_calls(client: Any, clip_model: str, data: bytes) -> tuple[Call, Call]:
    """(/clip/img, /predict clip visual) on one photo, each returning the vector as floats."""
    entries = {"clip": {"visual": {"modelName": clip_model, "options": {}}}}
    return (lambda: [float(v) for v in client.post_file("/clip/img", data)["result"]],
            lambda: [float(v) for v in json.loads(client.post_predict(entries, data)["clip"])])


def faces_calls(client: Any, faces_model: str, data: bytes) -> tuple[Call, Call]:
    """(/represent, /predict facial-recognition) on one photo, each returning its face count."""
    entries = {"facial-recognition": {
        "detection": {"modelName": faces_model, "options": {"minScore": FACE_MIN_SCORE}},
        "recognition": {"modelName": faces_model, "options": {}},
    }}
    return (lambda: len(client.post_file("/represent", data)["result"]),
            lambda: len(client.post_predict(entries, data)["facial-recognition"]))


def check_clip(name: str, mt: Call, predict: Call) -> str:
    ours, theirs = mt(), predict()
    delta = max((abs(a - b) for a, b in zip(ours, theirs)), default=float("inf"))
    if len(ours) != len(theirs) or delta > CLIP_TOLERANCE:
        raise Disagreement(f"{name}: /clip/img and /predict differ (dims {len(ours)}/{len(theirs)}, max |Δ| {delta})")
    return f"{name}: {len(ours)}-d vectors, max |Δ| {delta:.1e}"


def check_faces(name: str, mt: Call, predict: Call) -> str:
    ours, theirs = mt(), predict()
    if ours != theirs:
        raise Disagreement(f"{name}: /represent found {ours} faces, /predict {theirs}")
    return f"{name}: {ours} face(s) on both"


def counted(call: Call) -> Callable[[], int]:
    """`call` as faces.measure wants it (returning a count; one image here)."""

    def one() -> int:
        call()
        return 1

    return one


def alternate(mt: Call, predict: Call, requests: int, rounds: int, level: int) -> tuple[faces.Run, faces.Run]:
    """`rounds` rounds of both routes at `level` concurrent requests, the order swapped every round."""
    samples = {"mt": faces.Samples(), "predict": faces.Samples()}
    calls = {"mt": counted(mt), "predict": counted(predict)}
    per_round = max(level, requests // rounds)
    for index in range(rounds):
        for side in ("mt", "predict") if index % 2 == 0 else ("predict", "mt"):
            faces.measure(calls[side], per_round, level, samples[side])
    return samples["mt"].run(), samples["predict"].run()


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench predict", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stand-ins here between runs")
    parser.add_argument("--requests", type=int, default=16, help="requests per case, route and concurrency")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two routes")
    parser.add_argument("--warmup", type=int, default=2, help="requests per route before measuring")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    parser.add_argument("--quick", action="store_true", help="tiny stand-ins, for a smoke test")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.concurrency.split(",")]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    with contextlib.ExitStack() as stack:
        if args.workdir is None and args.quick:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mtpt-bench-predict-")))
        else:
            workdir = args.workdir or Path(tempfile.gettempdir()) / "mt-photos-triton-bench-predict"
        workdir.mkdir(parents=True, exist_ok=True)
        repository, with_faces = prepare(workdir, args.quick)
        rows, served_start, served_after = run_cases(
            repository, with_faces, args.requests, args.rounds, args.warmup, levels
        )
        print_table(rows, "tiny stand-ins (--quick)" if args.quick else "full-size stand-ins")
        clip_source = workdir / ("clip-stand-in" if args.quick else "stand-in")
        sources = Sources(clip=clip_source, faces=workdir / "faces-pack" if with_faces else None)
        report_for(sources, served_start, served_after, "predict (clip and faces on one server)")
    return 0


def run_cases(
    repository: Path, with_faces: bool, requests: int, rounds: int, warmup: int, levels: list[int]
) -> tuple[list[tuple[str, int, faces.Run, faces.Run]], TreeMemory, TreeMemory]:
    """The rows of the table, and the served tree's memory after start and after the cases."""
    from export.clip import IMAGE
    from export.faces import FACES_MODEL
    from mt_photos_triton.bench.client import BenchClient

    cases: list[tuple[str, Callable[..., tuple[Call, Call]], Callable[[str, Call, Call], str], str, bytes]] = [
        ("clip 1280x960", clip_calls, check_clip, served_name(repository, IMAGE), clip.photo_jpeg(0))
    ]
    if with_faces:
        faces_name = served_name(repository, FACES_MODEL)
        cases += [(f"faces {label.split(' (')[0]}", faces_calls, check_faces, faces_name, data)
                  for label, data in faces.photos().items()]
    rows = []
    with serving(repository) as url:
        served_start = served_tree()
        client = BenchClient(url, KEY, timeout_s=120)
        for name, calls, check, model, data in cases:
            mt, predict = calls(client, model, data)
            print(f"same answers: {check(name, mt, predict)}", flush=True)
            for _ in range(warmup):
                mt(), predict()
            rows += [(name, level, *alternate(mt, predict, requests, rounds, level)) for level in levels]
        served_after = served_tree()
    return rows, served_start, served_after


def print_table(rows: list[tuple[str, int, faces.Run, faces.Run]], models: str) -> None:
    print(f"\npredict bench: immich /predict vs the MT Photos route on one server, {models}, "
          f"{os.cpu_count()} CPU cores")
    header = (f"{'case':<16} {'conc':>4} | {'MT img/s':>9} {'p50 ms':>7} | {'/predict img/s':>14} {'p50 ms':>7} | "
              f"{'ratio':>6}")
    print(header)
    print("-" * len(header))
    for name, level, mt, predict in rows:
        route = "/clip/img" if name.startswith("clip") else "/represent"
        print(f"{name:<16} {level:>4} | {mt.images_per_s:>9.2f} {mt.p50_ms:>7.1f} | {predict.images_per_s:>14.2f} "
              f"{predict.p50_ms:>7.1f} | {predict.images_per_s / mt.images_per_s:>5.2f}x  ({route})")
    print("ratio: /predict images/s ÷ the MT route's (1.00: the protocol adds no cost)")
