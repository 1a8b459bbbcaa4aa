"""`mt-photos-triton bench clip`: `/clip/img` and `/clip/txt` over HTTP against the reference in-process.

One run, same machine, same model files: full-size random-weight stand-ins of the default model's encoders
(ViT-B/32 at 224; an XLM-R-base-sized text tower with a 250002-token vocabulary), exported by the real
export into a scratch repository and served by the embedded Triton behind the adapter (its own process),
next to the reference pipeline called in-process (immich v2.5.6 as mt-photos-ml runs it: OpenCV decode to
check the upload, Pillow decode and transform, the shipped batch-1 ONNX file, orjson serialisation).
Ours and the reference never run at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PHOTO_SIZE = (1280, 960)
CONCURRENCY = (1, 4)
QUERIES = ["红色", "a red car on the street", "海边的日落", "a cat sleeping on a sofa", "雪山 snow mountain",
           "children playing in the park", "生日蛋糕", "🐶 dog"]
KEY = "mt_photos_ai_extra"
START_TIMEOUT_S = 120.0


@dataclass
class Measure:
    """Wall time and per-request latencies of one (route, side, concurrency) run."""

    seconds: float
    latencies: list[float]
    rounds: list[Measure] = field(default_factory=list)

    @classmethod
    def of_rounds(cls, rounds: list[Measure]) -> Measure:
        """The rounds taken together: their time summed, their latencies pooled, each round kept."""
        return cls(sum(r.seconds for r in rounds), [t for r in rounds for t in r.latencies], rounds)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000.0

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000.0


def run_concurrently(call: Callable[[int], object], requests: int, concurrency: int) -> Measure:
    latencies: list[float] = []

    def timed(index: int) -> None:
        start = time.perf_counter()
        call(index)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(timed, range(requests)))
    return Measure(time.perf_counter() - start, latencies)


def cosine(a: list[str], b: list[str]) -> float:
    x, y = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def compare(
    route: str, ours: Callable[[int], object], reference: Callable[[int], object], requests: int, concurrency: int,
    rounds: int,
) -> dict[tuple[str, str, int], Measure]:
    """Alternate blocks of ours and the reference, so both see the same background load (the machine is
    shared); warm-up requests first. Each side's measure keeps its rounds (`rounds`)."""
    run_concurrently(ours, 2 * concurrency, concurrency)
    run_concurrently(reference, 2 * concurrency, concurrency)
    measured: dict[str, list[Measure]] = {"ours": [], "reference": []}
    per_round = max(concurrency, requests // rounds)
    for _ in range(rounds):
        for side, call in (("ours", ours), ("reference", reference)):
            measured[side].append(run_concurrently(call, per_round, concurrency))
    return {(route, side, concurrency): Measure.of_rounds(measures) for side, measures in measured.items()}


def round_ratios(ours: Measure, reference: Measure, of: Callable[[Measure, Measure], float]) -> str:
    """The ratio in each alternating round, lowest to highest: how far one run's figure can be trusted."""
    ratios = sorted(of(a, b) for a, b in zip(ours.rounds, reference.rounds))
    return f"rounds {ratios[0]:.2f}-{ratios[-1]:.2f}" if ratios else ""


def photo_jpeg(seed: int) -> bytes:
    """A 1280x960 photo-like JPEG (smooth gradients with noise; JPEG work like a real photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, ((x // 40 + y // 40) * 37 + seed * 50) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ reference


class Reference:
    """The reference service's CLIP pipeline, in-process (immich machine-learning v2.5.6 + mt-photos-ml)."""

    def __init__(self, model_dir: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        # immich's CPU session options (machine-learning/immich_ml/sessions/ort.py:128-147 with the defaults of
        # config.py:71-73): the arena on, one inter-op thread, two intra-op threads whatever the core count
        options = ort.SessionOptions()
        options.enable_cpu_mem_arena = True
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 2
        self.visual, self.textual = (
            ort.InferenceSession(str(model_dir / part / "model.onnx"), options, providers=["CPUExecutionProvider"])
            for part in ("visual", "textual")
        )
        preprocess = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text())
        self.size = preprocess["size"][0] if isinstance(preprocess["size"], list) else preprocess["size"]
        self.mean = np.array(preprocess["mean"], dtype=np.float32)
        self.std = np.array(preprocess["std"], dtype=np.float32)
        context = json.loads((model_dir / "config.json").read_text())["text_cfg"].get("context_length", 77)
        pad = json.loads((model_dir / "textual" / "tokenizer_config.json").read_text())["pad_token"]
        self.tokenizer = Tokenizer.from_file(str(model_dir / "textual" / "tokenizer.json"))
        self.tokenizer.enable_padding(length=context, pad_token=pad, pad_id=self.tokenizer.token_to_id(pad))
        self.tokenizer.enable_truncation(max_length=context)

    @staticmethod
    def _result(embedding: np.ndarray) -> list[str]:
        import orjson

        return ["{:.16f}".format(v) for v in json.loads(orjson.dumps(embedding, option=orjson.OPT_SERIALIZE_NUMPY))]

    def image(self, data: bytes) -> list[str]:
        import cv2
        from PIL import Image

        # mt-photos-ml checks the upload with OpenCV, then immich decodes it again with Pillow
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
            raise ValueError("Invalid image format")
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        size = self.size
        if image.width < image.height:
            image = image.resize((size, int((image.height / image.width) * size)), resample=Image.Resampling.BICUBIC)
        else:
            image = image.resize((int((image.width / image.height) * size), size), resample=Image.Resampling.BICUBIC)
        left, top = int(image.size[0] / 2 - size / 2), int(image.size[1] / 2 - size / 2)
        array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
        array *= 1.0 / self.std
        array -= self.mean / self.std
        return self._result(self.visual.run(None, {"image": array.transpose(2, 0, 1)[None]})[0][0])

    def text(self, text: str) -> list[str]:
        ids = self.tokenizer.encode(" ".join(text.split())).ids
        return self._result(self.textual.run(None, {"text": np.array([ids], dtype=np.int32)})[0][0])


# --------------------------------------------------------------------------------------------- ours


class Served:
    """The embedded Triton on the exported repository, and the adapter in its own process."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self.triton = None
        self.url = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Served:
        from mt_photos_triton.bench.servers import adapter_process
        from export.clip import IMAGE, TEXT
        from mt_photos_triton.runtime.embedded import EmbeddedTriton

        self.triton = EmbeddedTriton(
            repository=self.repository, models=[IMAGE, TEXT], ports={"http": 0, "grpc": 0, "metrics": 0}
        )
        try:
            self._stack.enter_context(self.triton)
            self.url = self._stack.enter_context(adapter_process(self.triton.http_url, KEY, START_TIMEOUT_S))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def http_caller(url: str, route: str, send: Callable[[Any, int], Any]) -> Callable[[int], object]:
    """`send(client, index)` posts request `index` with the shared keep-alive client (bench/client.py)."""
    from mt_photos_triton.bench.client import BenchClient

    client = BenchClient(url, KEY, timeout_s=120)

    def call(index: int) -> object:
        body = send(client, index)
        if not body.get("result"):
            raise RuntimeError(f"{route} failed: {body}")
        return body["result"]

    return call


# ----------------------------------------------------------------------------------------------- main


def prepare(workdir: Path) -> tuple[Path, Path]:
    """The stand-in model (built once, kept in workdir) and a scratch repository with it exported."""
    from export.clip import export
    from mt_photos_triton.reference.clip_standins import DEFAULT_MODEL_SPEC, write_immich_layout

    model_dir = workdir / "stand-in"
    if not (model_dir / "textual" / "model.onnx").is_file():
        print("building full-size random-weight stand-ins (ViT-B/32 @224, XLM-R-base text tower) ...", flush=True)
        write_immich_layout(model_dir, DEFAULT_MODEL_SPEC)
    repository = workdir / "repository"  # export installs the python models and ensembles itself
    print("exporting them with `export clip` (batch rewrite + verification) ...", flush=True)
    result = export(repository, None, str(model_dir), force=False)
    for note in result.notes:
        print(f"  {note}")
    return model_dir, repository


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench clip", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stand-ins here between runs")
    # 32 photos a round at the default 4 rounds: with 8, filling and draining the two-stage pipeline (decode, then
    # encoder) at concurrency 4 weighed on our side more than the steady state a user indexing photos sees
    parser.add_argument("--images", type=int, default=128, help="/clip/img requests per measurement")
    parser.add_argument("--queries", type=int, default=64, help="/clip/txt requests per measurement")
    parser.add_argument("--rounds", type=int, default=4, help="alternating blocks of ours and the reference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    workdir = args.workdir or Path(tempfile.gettempdir()) / "mt-photos-triton-bench-clip"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, repository = prepare(workdir)
    photos = [photo_jpeg(seed) for seed in range(8)]
    reference = Reference(model_dir)

    def image_request(client: Any, index: int) -> Any:
        return client.post_file("/clip/img", photos[index % len(photos)])

    def text_request(client: Any, index: int) -> Any:
        return client.post_json("/clip/txt", {"text": QUERIES[index % len(QUERIES)]})

    from mt_photos_triton.bench.memory import Sources, report_for, served_tree

    results: dict[tuple[str, str, int], Measure] = {}
    with Served(repository) as served:
        served_start = served_tree()
        image_call = http_caller(served.url, "/clip/img", image_request)
        text_call = http_caller(served.url, "/clip/txt", text_request)
        # same vectors as the reference (sanity: a bench of something else would mean nothing)
        print(f"same answers: /clip/img cosine {cosine(image_call(0), reference.image(photos[0])):.7f}, "
              f"/clip/txt cosine {cosine(text_call(0), reference.text(QUERIES[0])):.7f}")
        reference_image = lambda i: reference.image(photos[i % len(photos)])  # noqa: E731
        reference_text = lambda i: reference.text(QUERIES[i % len(QUERIES)])  # noqa: E731
        for concurrency in CONCURRENCY:
            results.update(compare("img", image_call, reference_image, args.images, concurrency, args.rounds))
            results.update(compare("txt", text_call, reference_text, args.queries, concurrency, args.rounds))
        served_after = served_tree()
    print_table(results, os.cpu_count() or 0)
    report_for(Sources(clip=model_dir), served_start, served_after, "clip")
    return 0


def print_table(results: dict[tuple[str, str, int], Measure], cores: int) -> None:
    print(f"\nclip bench: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG, stand-ins of "
          f"XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k's encoders, {cores} CPU cores")
    print(f"{'route':<10} {'conc':>4}  {'ours':>28}  {'reference in-process':>28}  {'ratio':>22}")
    rate = lambda a, b: a.rate / b.rate  # noqa: E731
    speed = lambda a, b: b.p50 / a.p50  # noqa: E731 - latency read as a speed: above 1 is ours faster
    for concurrency in CONCURRENCY:
        ours, ref = results["img", "ours", concurrency], results["img", "reference", concurrency]
        print(f"{'/clip/img':<10} {concurrency:>4}  {ours.rate:>21.2f} img/s  {ref.rate:>21.2f} img/s  "
              f"{rate(ours, ref):>12.2f}x (img/s)  {round_ratios(ours, ref, rate)}")
    for concurrency in CONCURRENCY:
        ours, ref = results["txt", "ours", concurrency], results["txt", "reference", concurrency]
        print(f"{'/clip/txt':<10} {concurrency:>4}  p50 {ours.p50:>6.1f} p95 {ours.percentile(95):>6.1f} ms  "
              f"p50 {ref.p50:>6.1f} p95 {ref.percentile(95):>6.1f} ms  "
              f"p50 ours/ref {ours.p50 / ref.p50:>5.2f} = {speed(ours, ref):.2f}x  {round_ratios(ours, ref, speed)}")
