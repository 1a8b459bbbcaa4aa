"""A real embedded server told ACCELERATOR=gpu on a machine whose onnxruntime has no CUDA provider: it serves an
onnxruntime model whose exported GPU variant asks for a GPU instance and TensorRT, on CPU, and says so once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from export.configs import add_tensor, new_config, write_config
from mt_photos_triton.runtime import embedded
from mt_photos_triton.runtime.embedded import EmbeddedTriton
from mt_photos_triton.runtime.providers import CUDA


def _doubling_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


def test_gpu_variant_is_ignored_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if CUDA in embedded.onnxruntime_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    import tritonclient.http as triton_http

    config = new_config("double", "test", 8, backend="onnxruntime")
    add_tensor(config.input, "x", "TYPE_FP32", [4])
    add_tensor(config.output, "y", "TYPE_FP32", [4])
    write_config(tmp_path / "double", config)
    assert "KIND_GPU" in (tmp_path / "double" / "configs" / "gpu.pbtxt").read_text()
    _doubling_model(tmp_path / "double" / "1" / "model.onnx")

    ports = {"http": 0, "grpc": 0, "metrics": 0}
    server = EmbeddedTriton(repository=tmp_path, models=["double"], accelerator="gpu", ports=ports)
    with caplog.at_level(logging.WARNING, logger=embedded.__name__), server:
        client = triton_http.InferenceServerClient(server.http_url)
        data = np.arange(8, dtype=np.float32).reshape(2, 4)
        request = triton_http.InferInput("x", list(data.shape), "FP32")
        request.set_data_from_numpy(data)
        result = client.infer("double", [request]).as_numpy("y")
        instance = client.get_model_config("double")["instance_group"][0]["kind"]
    np.testing.assert_array_equal(result, data * 2)
    assert instance == "KIND_CPU", "config.pbtxt is served, not configs/gpu.pbtxt"
    assert [r.getMessage() for r in caplog.records if "no CUDA provider" in r.getMessage()] != []
    assert len(caplog.records) == 1
