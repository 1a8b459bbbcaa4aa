"""The embedded onnxruntime backend's `nice` parameter: the session's threads of a real stub run at that niceness,
a value out of range keeps the model from loading, and a GPU variant does not carry it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export.configs import NICE_PARAMETER, add_tensor, gpu_variant, new_config, set_parameters, write_config
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from tests.e2e.test_onnxruntime_backend import _stubs_of
from tests.unit.runtime.test_gpu_variant_on_cpu import _doubling_model

PORTS = {"http": 0, "grpc": 0, "metrics": 0}


def _model(repository: Path, nice: str) -> None:
    config = new_config("double", "test", 8, backend="onnxruntime")
    add_tensor(config.input, "x", "TYPE_FP32", [4])
    add_tensor(config.output, "y", "TYPE_FP32", [4])
    set_parameters(config, {NICE_PARAMETER: nice, "intra_op_thread_count": 2})
    write_config(repository / "double", config)
    _doubling_model(repository / "double" / "1" / "model.onnx")


def _stub_thread_niceness(model_file: Path) -> list[list[int]]:
    """The niceness of every thread of each stub process serving `model_file` (field 19 of
    /proc/PID/task/TID/stat), one list per stub."""
    stubs = _stubs_of(model_file)
    assert stubs, f"no stub process serves {model_file}"

    def niceness(task: Path) -> int:
        return int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])

    return [[niceness(task) for task in Path(f"/proc/{pid}/task").iterdir()] for pid in stubs]


def test_the_sessions_threads_run_at_the_configured_niceness(tmp_path: Path) -> None:
    import tritonclient.http as triton_http

    _model(tmp_path, "7")
    with EmbeddedTriton(repository=tmp_path, models=["double"], ports=PORTS) as server:
        client = triton_http.InferenceServerClient(server.http_url.replace("http://", ""))
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        request = triton_http.InferInput("x", list(data.shape), "FP32")
        request.set_data_from_numpy(data)
        np.testing.assert_array_equal(client.infer("double", [request]).as_numpy("y"), data * 2)
        niceness = _stub_thread_niceness(tmp_path / "double" / "1" / "model.onnx")
    # in every instance, the thread that runs the model and the session's pool thread (2 intra-op threads: the
    # caller and one more)
    assert all(threads.count(7) >= 2 for threads in niceness), niceness


@pytest.mark.parametrize("nice", ["-5", "20", "ten"])
def test_a_niceness_out_of_range_keeps_the_model_from_loading(tmp_path: Path, nice: str) -> None:
    import tritonclient.http as triton_http

    _model(tmp_path, nice)
    with EmbeddedTriton(repository=tmp_path, models=["double"], ports=PORTS) as server:
        client = triton_http.InferenceServerClient(server.http_url.replace("http://", ""))
        (entry,) = client.get_model_repository_index()
        ready = client.is_model_ready("double")
    assert not ready and entry["state"] == "UNAVAILABLE", entry
    assert "parameter nice" in entry.get("reason", ""), entry


def test_a_gpu_variant_keeps_its_priority() -> None:
    config = new_config("double", "test", 8, backend="onnxruntime")
    add_tensor(config.input, "x", "TYPE_FP32", [4])
    set_parameters(config, {NICE_PARAMETER: "10", "allow_spinning": "1"})
    variant = gpu_variant(config)
    assert NICE_PARAMETER not in variant.parameters and variant.parameters["allow_spinning"].string_value == "1"
    assert config.parameters[NICE_PARAMETER].string_value == "10"
