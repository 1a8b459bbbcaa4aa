"""`mt-photos-triton bench faces`: `/represent` over HTTP (adapter → embedded Triton) vs insightface in-process.

Both sides run the same model files in the same run: the largest SCRFD detector of the fixtures (or
--detector) and a full-size stand-in of buffalo_l's recogniser (an IResNet-50 with random weights, built here:
the real w600k_r50 may not be shipped). Ours: the exported models behind the real adapter, requests from C
client threads. Reference: insightface's SCRFD (640) + norm_crop + ArcFaceONNX, face by face as its
FaceAnalysis does, from C threads sharing the sessions, on the same image bytes (cv2.imdecode as the
reference service does). Printed: images/s, faces/s, p50/p95 latency per photo and concurrency, the
ratio ours/reference of images/s, and "models only": the reference's two ONNX runs alone from as many
threads, roughly the ceiling of these models on this machine, with each side's share of it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONCURRENCY = (1, 4)
API_KEY = "mt_photos_ai_extra"
MIN_SCORE = 0.65


def fixtures_dir() -> Path:
    return Path(os.environ.get("MT_PHOTOS_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def largest_detector() -> Path:
    candidates = sorted((fixtures_dir() / "models" / "scrfd").glob("*.onnx"), key=lambda p: p.stat().st_size)
    if not candidates:
        raise SystemExit(f"no SCRFD detector under {fixtures_dir()}; pass --detector PATH")
    return candidates[-1]


def photos() -> dict[str, bytes]:
    """A 1-face and a 6-face photo."""
    import insightface

    return {
        "1 face (obama.jpg)": (fixtures_dir() / "images" / "faces" / "obama.jpg").read_bytes(),
        "6 faces (t1.jpg)": (Path(insightface.__file__).parent / "data" / "images" / "t1.jpg").read_bytes(),
    }


@dataclass
class Run:
    images_per_s: float
    faces_per_s: float
    p50_ms: float
    p95_ms: float


@dataclass
class Samples:
    """What the rounds of one side at one concurrency measured, added up."""

    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    faces: int = 0

    def run(self) -> Run:
        quantiles = statistics.quantiles(self.latencies, n=20) if len(self.latencies) > 1 else self.latencies * 19
        count = len(self.latencies)
        return Run(count / self.wall_s, self.faces / self.wall_s, statistics.median(self.latencies) * 1e3,
                   quantiles[18] * 1e3)


def measure(call: Callable[[], int], requests: int, concurrency: int, into: Samples) -> None:
    """`requests` calls from `concurrency` threads, added to `into`; `call` returns the face count of its photo."""
    lock = threading.Lock()

    def one(_: int) -> None:
        start = time.perf_counter()
        found = call()
        elapsed = time.perf_counter() - start
        with lock:
            into.latencies.append(elapsed)
            into.faces += found

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    into.wall_s += time.perf_counter() - start


def adapter(triton_url: str) -> contextlib.AbstractContextManager[str]:
    """The real adapter on a free loopback port, in a process of its own as in production."""
    from mt_photos_triton.bench.servers import adapter_process

    return adapter_process(triton_url, API_KEY)


def http_call(url: str, data: bytes) -> Callable[[], int]:
    from mt_photos_triton.bench.client import BenchClient

    client = BenchClient(url, API_KEY)
    return lambda: len(client.post_file("/represent", data)["result"])


def reference_call(pack: Path, data: bytes) -> Callable[[], int]:
    reference = reference_faces(pack)
    return lambda: reference(data)


def reference_faces(pack: Path) -> Callable[[bytes], int]:
    """insightface's SCRFD + norm_crop + ArcFaceONNX on the pack's files, sessions made once; the call takes a
    photo's bytes and returns its face count."""
    import warnings

    import cv2
    import numpy as np
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD
    from insightface.utils import face_align

    from export.faces import DETECTION_FILE, DETECTOR_INPUT_SIZE, RECOGNITION_FILE

    size = (DETECTOR_INPUT_SIZE, DETECTOR_INPUT_SIZE)
    detector = SCRFD(str(pack / DETECTION_FILE))
    detector.prepare(-1, input_size=size, det_thresh=MIN_SCORE)
    recognizer = ArcFaceONNX(str(pack / RECOGNITION_FILE))
    recognizer.prepare(-1)
    warnings.filterwarnings("ignore", category=FutureWarning)  # skimage's estimate(), inside norm_crop

    def call(data: bytes) -> int:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        _, landmarks = detector.detect(image, input_size=size)
        for kps in landmarks:
            recognizer.get_feat(face_align.norm_crop(image, kps))
        return len(landmarks)

    return call


def models_only_call(pack: Path, data: bytes, faces: int) -> Callable[[], int]:
    """Roughly the machine's ceiling for this photo: the two ONNX runs and nothing else (no decode, letterbox,
    anchor decode, NMS or alignment), as the reference runs them (default onnxruntime sessions, batch 1, face
    by face), on inputs prepared once; `faces` is the photo's face count."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    from export.faces import DETECTION_FILE, DETECTOR_INPUT_SIZE, RECOGNITION_FILE
    from mt_photos_triton.pipelines import faces as pipeline

    detector = ort.InferenceSession(str(pack / DETECTION_FILE), providers=["CPUExecutionProvider"])
    recognizer = ort.InferenceSession(str(pack / RECOGNITION_FILE), providers=["CPUExecutionProvider"])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    canvas, _ = pipeline.letterbox(image, DETECTOR_INPUT_SIZE)
    blob = pipeline.to_nchw_rgb([canvas], 127.5, 128.0)  # SCRFD's normalisation (timing only: any values do)
    crop = np.zeros((1, 3, pipeline.ALIGNED_SIZE, pipeline.ALIGNED_SIZE), np.float32)
    detector_input, recognizer_input = detector.get_inputs()[0].name, recognizer.get_inputs()[0].name

    def call() -> int:
        detector.run(None, {detector_input: blob})
        for _ in range(faces):
            recognizer.run(None, {recognizer_input: crop})
        return faces

    return call


def build_pack(root: Path, detector: Path) -> Path:
    import shutil

    from mt_photos_triton.reference.arcface_standin import build_iresnet50

    (root / "detection").mkdir(parents=True, exist_ok=True)
    shutil.copy(detector, root / "detection" / "model.onnx")
    build_iresnet50(root / "recognition" / "model.onnx")
    return root


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench faces", description=__doc__)
    parser.add_argument("--detector", type=Path, default=None, help="SCRFD file (default: the largest fixture)")
    parser.add_argument("--requests", type=int, default=48, help="requests per photo and concurrency, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours and the reference")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)))
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    detector = args.detector or largest_detector()

    from export import faces as faces_export
    from mt_photos_triton.bench.memory import Sources, report_for, served_tree
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    with tempfile.TemporaryDirectory(prefix="mtpt-bench-faces-") as scratch:
        pack = build_pack(Path(scratch) / "pack", detector)
        repository = Path(scratch) / "repository"
        faces_export.export(repository, "bench", str(pack), force=True)
        print(f"detector {detector.name}, recogniser IResNet-50 stand-in (random weights, {os.cpu_count()} CPUs)")
        rows = []
        with EmbeddedTriton(repository=repository, models=None) as server, adapter(server.http_url) as url:
            served_start = served_tree()
            for name, data in photos().items():
                ours, reference = http_call(url, data), reference_call(pack, data)
                ceiling = models_only_call(pack, data, reference())
                for call in (ours, reference, ceiling):
                    for _ in range(args.warmup):
                        call()
                for level in levels:
                    # alternating rounds, so that all three see the same background load (the machine is shared)
                    mine, theirs, bare = Samples(), Samples(), Samples()
                    for _ in range(args.rounds):
                        per_round = max(level, args.requests // args.rounds)
                        measure(ours, per_round, level, mine)
                        measure(reference, per_round, level, theirs)
                        measure(ceiling, per_round, level, bare)
                    rows.append((name, level, mine.run(), theirs.run(), bare.run()))
            served_after = served_tree()
        print_table(rows)
        report_for(Sources(faces=pack), served_start, served_after, "faces")
    return 0


def print_table(rows: list[tuple[str, int, Run, Run, Run]]) -> None:
    header = (
        f"{'photo':<18} {'conc':>4} | {'ours img/s':>10} {'faces/s':>8} {'p50 ms':>7} {'p95 ms':>7} | "
        f"{'ref img/s':>9} {'faces/s':>8} {'p50 ms':>7} {'p95 ms':>7} | {'ratio':>5} | {'models only':>11} "
        f"{'ours':>5} {'ref':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, level, mine, theirs, bare in rows:
        print(
            f"{name:<18} {level:>4} | {mine.images_per_s:>10.2f} {mine.faces_per_s:>8.2f} {mine.p50_ms:>7.0f} "
            f"{mine.p95_ms:>7.0f} | {theirs.images_per_s:>9.2f} {theirs.faces_per_s:>8.2f} {theirs.p50_ms:>7.0f} "
            f"{theirs.p95_ms:>7.0f} | {mine.images_per_s / theirs.images_per_s:>5.2f}x | "
            f"{bare.images_per_s:>7.2f} img/s {mine.images_per_s / bare.images_per_s:>5.0%} "
            f"{theirs.images_per_s / bare.images_per_s:>5.0%}"
        )
    print(
        "models only: the two ONNX runs alone, in-process, as the reference runs them and from as many threads (no\n"
        "decoding, letterbox, NMS or alignment): roughly what these models give on this machine; ours and ref: each\n"
        "side's images/s as a share of it."
    )
