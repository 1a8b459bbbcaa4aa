"""Our python-based `onnxruntime` backend inside the real tritonserver, on the real SCRFD files where the
fixtures have them, else on the SCRFD-shaped stand-ins the tests build (tests/faces_support.py: the same input,
output layout and names as det_500m.onnx and scrfd_500m_bnkps_batched.onnx, other weights).

Proves that a `backend: "onnxruntime"` model loads unchanged, answers as onnxruntime does directly, batches
concurrent requests into one run, honours instance count and thread parameters, and fails per request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_aio
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from export.batching import batchable
from mt_photos_triton.procfs import processes
from mt_photos_triton.repository import ModelConfig
from export.configs import write_config
from tests.faces_support import build_standin_batched_detector, build_standin_detector
from tests.harness import TritonHarness, settled_statistics

pytestmark = pytest.mark.e2e

TOLERANCE = 1e-5
CONCURRENT = 16
SIDE = 640
FP32 = model_config_pb2.TYPE_FP32
BATCHED_OUTPUTS = ["score_8", "bbox_8", "kps_8", "score_32"]


def make_batchable(source: Path, target: Path) -> float:
    """The fixed-batch SCRFD re-export with a free batch axis, verified against batch-1 runs."""
    feeds = {"input.1": np.random.default_rng(0).uniform(-1, 1, (3, 3, SIDE, SIDE)).astype(np.float32)}
    batched, difference = batchable(onnx.load(str(source)), feeds)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(batched, str(target))
    return difference


def scrfd_config(
    name: str, *, batched: bool, instances: int = 1, threads: int | None = None, plain_outputs: list[str] | None = None
) -> ModelConfig:
    config = ModelConfig(name=name, backend="onnxruntime", max_batch_size=8 if batched else 0)
    tensor = config.input.add(name="input.1", data_type=FP32)
    if batched:
        tensor.dims.extend([3, -1, -1])  # the graph wants 640: other sizes must fail on their own
        for output in BATCHED_OUTPUTS:
            config.output.add(name=output, data_type=FP32, dims=[-1, -1])
        config.dynamic_batching.max_queue_delay_microseconds = 50_000
    else:
        tensor.dims.extend([1, 3, -1, -1])
        for output in plain_outputs:
            config.output.add(name=output, data_type=FP32, dims=[-1, -1])
    config.instance_group.add(count=instances, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    if threads is not None:
        config.parameters["intra_op_thread_count"].string_value = str(threads)
        config.parameters["inter_op_thread_count"].string_value = "1"
    return config


def scrfd_files(fixtures: Path, work: Path) -> tuple[Path, Path]:
    """(the fixed-batch 640x640 file with named outputs, the plain det_500m-shaped file): the fixtures' or stand-ins."""
    source = fixtures / "models" / "scrfd"
    batched, plain = source / "scrfd_500m_bnkps_batched.onnx", source / "det_500m.onnx"
    if not batched.is_file():
        batched = build_standin_batched_detector(work / "standin_batched.onnx", SIDE)
    if not plain.is_file():
        plain = build_standin_detector(work / "standin_plain.onnx")
    return batched, plain


def plain_outputs(model_file: Path) -> list[str]:
    """The unbatched file's first three outputs (det_500m.onnx: the scores, named "443", "446", "449")."""
    return [output.name for output in onnx.load(str(model_file)).graph.output[:3]]


@pytest.fixture(scope="module")
def scrfd_models(triton: TritonHarness, fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    batched_source, plain_source = scrfd_files(fixtures, tmp_path_factory.mktemp("scrfd"))
    batched_file = triton.repository / "scrfd_batched" / "1" / "model.onnx"
    make_batchable(batched_source, batched_file)
    write_config(triton.repository / "scrfd_batched", scrfd_config("scrfd_batched", batched=True, instances=2, threads=1))
    # the same file, unchanged, unbatched: as immich ships it
    plain = triton.repository / "scrfd_plain"
    (plain / "1").mkdir(parents=True, exist_ok=True)
    (plain / "1" / "model.onnx").write_bytes(plain_source.read_bytes())
    outputs = plain_outputs(plain_source)
    write_config(plain, scrfd_config("scrfd_plain", batched=False, threads=4, plain_outputs=outputs))
    triton.load("scrfd_batched", "scrfd_plain")
    yield {"scrfd_batched": batched_file, "scrfd_plain": plain / "1" / "model.onnx", "plain_outputs": outputs,
           "stand-in": not plain_source.is_relative_to(fixtures)}
    triton.unload("scrfd_batched", "scrfd_plain")


def image_batch(seed: int, side: int = SIDE) -> np.ndarray:
    """Noise with bright 8x8 cells at random places: where the stand-in detector scores high, so that with it, as
    with the real files, each request's outputs are its own (a mixed-up answer cannot pass)."""
    rng = np.random.default_rng(seed)
    array = rng.uniform(-1, 1, (1, 3, side, side)).astype(np.float32)
    for row, col in rng.integers(0, side // 8, (32, 2)):
        array[..., row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] = 1.0
    return array


def infer(client: triton_http.InferenceServerClient, model: str, array: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    item = triton_http.InferInput("input.1", list(array.shape), "FP32")
    item.set_data_from_numpy(array, binary_data=True)
    result = client.infer(model, [item])
    return [result.as_numpy(name) for name in outputs]


def test_unbatched_model_loads_unchanged_and_matches_onnxruntime(triton: TritonHarness, scrfd_models: dict) -> None:
    session = ort.InferenceSession(str(scrfd_models["scrfd_plain"]), providers=["CPUExecutionProvider"])
    client = triton.client()
    outputs = scrfd_models["plain_outputs"]
    worst = 0.0
    for seed, side in [(1, 640), (2, 320), (3, 480)]:
        array = image_batch(seed, side)
        expected = session.run(outputs, {"input.1": array})
        served = infer(client, "scrfd_plain", array, outputs)
        for want, got in zip(expected, served):
            assert got.shape == want.shape
            worst = max(worst, float(np.abs(got - want).max()))
    which = "the stand-in for det_500m.onnx" if scrfd_models["stand-in"] else "det_500m.onnx"
    print(f"\nonnxruntime backend, {which} unbatched: max abs diff vs direct onnxruntime = {worst:.3g}")
    assert worst <= TOLERANCE


def test_concurrent_requests_are_batched_and_match(triton: TritonHarness, scrfd_models: dict) -> None:
    session = ort.InferenceSession(str(scrfd_models["scrfd_batched"]), providers=["CPUExecutionProvider"])
    arrays = [image_batch(seed) for seed in range(CONCURRENT)]

    async def run_all() -> tuple[list[list[np.ndarray]], dict]:
        client = triton_aio.InferenceServerClient(triton.url)
        before = (await client.get_inference_statistics("scrfd_batched"))["model_stats"][0]

        async def one(array: np.ndarray) -> list[np.ndarray]:
            item = triton_aio.InferInput("input.1", list(array.shape), "FP32")
            item.set_data_from_numpy(array, binary_data=True)
            result = await client.infer("scrfd_batched", [item])
            return [result.as_numpy(name) for name in BATCHED_OUTPUTS]

        try:
            results = await asyncio.gather(*(one(a) for a in arrays))
            after = await settled_statistics(client, "scrfd_batched", before, CONCURRENT)
        finally:
            await client.close()
        stats = {k: int(after[k]) - int(before[k]) for k in ("inference_count", "execution_count")}
        return results, stats

    results, stats = asyncio.run(run_all())
    worst = 0.0
    for array, served in zip(arrays, results):
        expected = session.run(BATCHED_OUTPUTS, {"input.1": array})
        for want, got in zip(expected, served):
            assert got.shape == want.shape
            worst = max(worst, float(np.abs(got - want).max()))
    print(
        f"\nonnxruntime backend, batched {'stand-in ' if scrfd_models['stand-in'] else ''}SCRFD: {stats['inference_count']} requests in "
        f"{stats['execution_count']} executions; max abs diff vs direct onnxruntime = {worst:.3g}"
    )
    assert worst <= TOLERANCE
    assert stats["inference_count"] == CONCURRENT
    assert stats["execution_count"] < CONCURRENT, "the dynamic batcher never combined requests"


def test_one_bad_request_fails_alone(triton: TritonHarness, scrfd_models: dict) -> None:
    """A request the graph rejects (wrong spatial size) errors by itself while its batch mates succeed."""

    async def run_all() -> list[object]:
        client = triton_aio.InferenceServerClient(triton.url)

        async def one(array: np.ndarray) -> object:
            item = triton_aio.InferInput("input.1", list(array.shape), "FP32")
            item.set_data_from_numpy(array, binary_data=True)
            try:
                return (await client.infer("scrfd_batched", [item])).as_numpy("score_8")
            except InferenceServerException as error:
                return error

        try:
            return await asyncio.gather(*(one(image_batch(s, 320 if s == 3 else SIDE)) for s in range(8)))
        finally:
            await client.close()

    results = asyncio.run(run_all())
    failed = [i for i, r in enumerate(results) if isinstance(r, InferenceServerException)]
    assert failed == [3]
    # onnxruntime's own text stays in the server log: the client reads the generic message of the one policy
    assert "scrfd_batched: internal error" in str(results[3])
    assert "ONNXRuntimeError" not in str(results[3]) and "invalid_input" not in str(results[3])
    assert all(isinstance(r, np.ndarray) and r.shape == (1, 12800, 1) for i, r in enumerate(results) if i != 3)


def _stubs_of(model_file: Path) -> list[int]:
    """Stub processes serving `model_file` (a stub's first argument is its model's path)."""
    return [
        p.pid
        for p in processes()
        if len(p.argv) > 1 and p.argv[0].endswith("triton_python_backend_stub") and p.argv[1] == str(model_file)
    ]


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def test_instance_count_and_thread_parameters(scrfd_models: dict) -> None:
    batched = _stubs_of(scrfd_models["scrfd_batched"])
    plain = _stubs_of(scrfd_models["scrfd_plain"])
    assert len(batched) == 2, "instance_group count 2 must give two instances"
    assert len(plain) == 1
    # intra_op_thread_count 4 gives onnxruntime a pool of 3 extra threads; 1 gives none
    assert _threads(plain[0]) - _threads(batched[0]) >= 3
