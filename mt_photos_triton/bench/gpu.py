"""`mt-photos-triton bench gpu`: the GPU variants, end to end, on a machine with an NVIDIA GPU.

It exports the CLIP stand-ins (full-size random weights, as `bench clip`), writes their GPU variants with the
TensorRT caches in the work directory, serves them with the embedded Triton (onnxruntime-gpu), and prints: how
long the first start takes (TensorRT engine builds) against a second start on the filled cache, images (texts)
per second over HTTP at concurrency 1/8/32 per route, and each variant's drift from fp32 on CPU (the reference
pipeline in-process). Sized to finish within 10 minutes on one GPU. Where onnxruntime has no CUDA provider it
says so and exits 0 without exporting anything (a dry run, as on every CPU-only machine); the dry run also
prints what the OCR GPU variants send (the recogniser's width buckets).
`--warm URL` instead calls a running server's `ocr_rec` once per width bucket, with one row and with the
profile's largest call, so that its TensorRT engine is built (or loaded) into the cache volume before users
come, and prints each call's time (a call that takes seconds built an engine).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

CONCURRENCY = (1, 8, 32)
VARIANTS = ("gpu-fp32", "gpu")  # TRT_PRECISION=fp32, then each model's own precision


def missing_gpu() -> str | None:
    """Why this machine cannot run the bench, or None."""
    from mt_photos_triton.runtime.embedded import onnxruntime_providers
    from mt_photos_triton.runtime.providers import CUDA

    providers = onnxruntime_providers()
    if CUDA in providers:
        return None
    return (
        f"onnxruntime here has no {CUDA} (it has {', '.join(providers) or 'none'}): "
        "install onnxruntime-gpu on a machine with an NVIDIA GPU to run this bench"
    )


def ocr_buckets() -> str:
    """What the OCR GPU variants send, in one line."""
    from export.ocr_gpu import GPU_REC_ROWS_PER_CALL, REC_WIDTH_BUCKETS

    widths = REC_WIDTH_BUCKETS.widths
    return (
        f"OCR on a GPU: recogniser batches padded to widths {', '.join(map(str, widths))} "
        f"(ocr_rec on TensorRT, 1-{GPU_REC_ROWS_PER_CALL} rows x {widths[0]}-{widths[-1]} px), "
        "the detector at each photo's own size on CUDA"
    )


def warm(url: str, rows: int | None = None) -> int:
    """One `ocr_rec` call per width bucket, of one row and of `rows` rows (default: the profile's largest)."""
    import numpy as np
    import tritonclient.http as triton_http

    from export.ocr_configs import REC_HEIGHT, REC_MODEL
    from export.ocr_gpu import GPU_REC_ROWS_PER_CALL, REC_WIDTH_BUCKETS

    client = triton_http.InferenceServerClient(url.removeprefix("http://"), network_timeout=1800.0)
    try:
        for width in REC_WIDTH_BUCKETS.widths:
            for count in sorted({1, rows or GPU_REC_ROWS_PER_CALL}):
                item = triton_http.InferInput("image", [count, 3, REC_HEIGHT, width], "FP32")
                item.set_data_from_numpy(np.zeros((count, 3, REC_HEIGHT, width), dtype=np.float32), binary_data=True)
                started = time.perf_counter()
                client.infer(REC_MODEL, [item], outputs=[triton_http.InferRequestedOutput("classes", binary_data=True)])
                seconds = time.perf_counter() - started
                print(f"warm: {REC_MODEL} {count}x3x{REC_HEIGHT}x{width}: {seconds:.2f} s", flush=True)
    finally:
        client.close()
    return 0


def write_gpu_variants(repository: Path, cache_dir: Path) -> list[str]:
    """Every onnxruntime model's GPU variants, with the TensorRT caches under `cache_dir` (not /trt_cache)."""
    from google.protobuf import text_format

    from export.configs import GPU_FP32_VARIANT, GPU_VARIANT, VARIANTS_DIR, gpu_variant
    from mt_photos_triton.repository import read_config

    models = []
    for config_file in sorted(repository.glob("*/config.pbtxt")):
        config = read_config(config_file.parent)
        if config.backend != "onnxruntime":
            continue
        for name, fp32 in ((GPU_VARIANT, False), (GPU_FP32_VARIANT, True)):
            variant = gpu_variant(config, force_fp32=fp32, cache_dir=str(cache_dir))
            (config_file.parent / VARIANTS_DIR).mkdir(exist_ok=True)
            (config_file.parent / VARIANTS_DIR / f"{name}.pbtxt").write_text(text_format.MessageToString(variant))
        models.append(config.name)
    return models


def start_seconds(repository: Path, precision: str) -> float:
    """Seconds from start to ready of the embedded server with the GPU variants (engines built or loaded)."""
    from export.clip import IMAGE, TEXT
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    server = EmbeddedTriton(
        repository=repository, models=[IMAGE, TEXT], ports={"http": 0, "grpc": 0, "metrics": 0},
        accelerator="gpu", precision=precision, ready_timeout_s=600.0,
    )
    started = time.perf_counter()
    with server:
        return time.perf_counter() - started


def measure_variant(repository: Path, model_dir: Path, variant: str, requests: int) -> None:
    from mt_photos_triton.bench.clip import KEY, QUERIES, Reference, cosine, photo_jpeg, run_concurrently
    from mt_photos_triton.bench.client import BenchClient
    from mt_photos_triton.bench.servers import adapter_process
    from export.clip import IMAGE, TEXT
    from mt_photos_triton.runtime.embedded import EmbeddedTriton

    precision = "fp32" if variant == "gpu-fp32" else "auto"
    cold = start_seconds(repository, precision)
    warm = start_seconds(repository, precision)
    print(f"{variant}: first start {cold:.1f} s, second start {warm:.1f} s "
          f"(TensorRT engine build ~{max(cold - warm, 0.0):.1f} s)", flush=True)
    photos = [photo_jpeg(seed) for seed in range(8)]
    reference = Reference(model_dir)
    server = EmbeddedTriton(
        repository=repository, models=[IMAGE, TEXT], ports={"http": 0, "grpc": 0, "metrics": 0},
        accelerator="gpu", precision=precision, ready_timeout_s=600.0,
    )
    with server, adapter_process(server.http_url, KEY, 120.0) as url:
        client = BenchClient(url, KEY, timeout_s=120, connections=max(CONCURRENCY))  # one connection per caller

        def image_call(index: int) -> list[str]:
            return client.post_file("/clip/img", photos[index % len(photos)])["result"]

        def text_call(index: int) -> list[str]:
            return client.post_json("/clip/txt", {"text": QUERIES[index % len(QUERIES)]})["result"]

        image_drift = min(cosine(image_call(i), reference.image(p)) for i, p in enumerate(photos))
        text_drift = min(cosine(text_call(i), reference.text(q)) for i, q in enumerate(QUERIES))
        print(f"{variant}: drift from fp32 on CPU, least cosine: /clip/img {image_drift:.6f}, "
              f"/clip/txt {text_drift:.6f}", flush=True)
        for route, call in (("/clip/img", image_call), ("/clip/txt", text_call)):
            for concurrency in CONCURRENCY:
                run_concurrently(call, concurrency, concurrency)  # warm-up
                measure = run_concurrently(call, max(requests, concurrency), concurrency)
                print(f"{variant}: {route} concurrency {concurrency:>2}: {measure.rate:8.1f} /s, "
                      f"p50 {measure.p50:7.1f} ms, p99 {measure.percentile(99):7.1f} ms", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mt-photos-triton bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stand-ins and caches here")
    parser.add_argument("--requests", type=int, default=128, help="requests per route and concurrency")
    parser.add_argument("--warm", metavar="URL", help="build the OCR recogniser's engine on a running server instead")
    args = parser.parse_args(argv)
    if args.warm:
        return warm(args.warm)
    reason = missing_gpu()
    if reason is not None:
        print(f"bench gpu: dry run, nothing measured: {reason}")
        print(f"bench gpu: {ocr_buckets()}")
        return 0
    from mt_photos_triton.bench.clip import prepare

    workdir = args.workdir or Path(tempfile.gettempdir()) / "mt-photos-triton-bench-gpu"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir, repository = prepare(workdir)
    cache = workdir / "trt_cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first start then builds every engine: its time is measured
    print(f"GPU variants of {', '.join(write_gpu_variants(repository, cache))}; TensorRT caches in {cache}", flush=True)
    for variant in VARIANTS:
        measure_variant(repository, model_dir, variant, args.requests)
    return 0
