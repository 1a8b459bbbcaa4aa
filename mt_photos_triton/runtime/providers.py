"""onnxruntime execution providers for a model config, as the NGC server's native onnxruntime backend reads it:
a GPU instance with a `tensorrt` accelerator runs TensorRT (CUDA, then CPU, for the nodes it leaves), with
`cuda` or none the CUDA provider; a CPU instance, or a machine whose onnxruntime has no CUDA provider (the
`onnxruntime` wheel rather than `onnxruntime-gpu`), the CPU provider. Used by the embedded server's python
onnxruntime backend and by `bench gpu`; no Triton import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# the native backend's keys (onnxruntime_backend README, "Parameter mapping") that differ from the provider's
TRT_RENAMED = {"max_workspace_size_bytes": "trt_max_workspace_size"}
TRT_PRECISIONS = {"FP32": {}, "FP16": {"trt_fp16_enable": "True"}, "INT8": {"trt_int8_enable": "True"}}

# the backend's model parameter `cudnn_conv_algo_search` (0, 1, 2) as the CUDA provider spells it
CUDNN_SEARCH = {"0": "EXHAUSTIVE", "1": "HEURISTIC", "2": "DEFAULT"}

Provider = tuple[str, dict[str, str]]


def gpu_accelerators(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The config's `gpu_execution_accelerator` entries (Triton's JSON form of the config)."""
    accelerators = (config.get("optimization") or {}).get("execution_accelerators") or {}
    return list(accelerators.get("gpu_execution_accelerator") or [])


def tensorrt_options(parameters: Mapping[str, str], device_id: int) -> dict[str, str]:
    """The TensorRT provider's options for the backend's accelerator parameters."""
    options = {"device_id": str(device_id)}
    for key, value in parameters.items():
        if key == "precision_mode":
            if value.upper() not in TRT_PRECISIONS:
                raise ValueError(f"precision_mode {value!r}: expected one of {', '.join(TRT_PRECISIONS)}")
            options.update(TRT_PRECISIONS[value.upper()])
        else:
            options[TRT_RENAMED.get(key, key)] = value
    return options


def session_providers(
    config: Mapping[str, Any], instance_kind: str, device_id: int, available: Sequence[str]
) -> list[Provider]:
    """Providers in order of preference for one model instance. `instance_kind` is Triton's
    `model_instance_kind` ("CPU", "GPU"); `available`: onnxruntime.get_available_providers()."""
    if instance_kind.upper() != "GPU" or CUDA not in available:
        return [(CPU, {})]
    cuda: Provider = (CUDA, {"device_id": str(device_id)})
    search = ((config.get("parameters") or {}).get("cudnn_conv_algo_search") or {}).get("string_value")
    if search is not None:
        cuda[1]["cudnn_conv_algo_search"] = CUDNN_SEARCH[search]
    for accelerator in gpu_accelerators(config):
        if accelerator.get("name") == "tensorrt":
            if TENSORRT not in available:
                log.warning("%s: onnxruntime has no TensorRT provider: running on CUDA", config.get("name"))
                return [cuda, (CPU, {})]
            return [(TENSORRT, tensorrt_options(accelerator.get("parameters") or {}, device_id)), cuda, (CPU, {})]
    return [cuda, (CPU, {})]
