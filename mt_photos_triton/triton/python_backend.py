"""The glue that needs Triton's `triton_python_backend_utils`: only the python models import this module.

Reading a request's inputs, the BLS call (sync and async) and the responses of an execute; the logic they
share with tests (the error policy, the BLS response check, row packing) lives in the pure modules beside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from numpy.typing import NDArray

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.triton.answers import Answers
from mt_photos_triton.triton.bls import checked_outputs


def input_array(request: Any, name: str) -> NDArray[Any]:
    """Input `name` of `request`; a request without it is refused (invalid_input)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise PipelineError(INVALID_INPUT, f"input '{name}' is missing")
    return tensor.as_numpy()


def optional_input(request: Any, name: str) -> NDArray[Any] | None:
    """Input `name` of `request`, or None when the request does not carry it (an `optional: true` input)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def respond(answers: Answers) -> list[Any]:
    """One InferenceResponse per request, in order: its output tensors, or its error by the one policy."""
    responses = []
    for outcome in answers.outcomes():
        if isinstance(outcome, str):
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(outcome)))
        else:
            tensors = [pb_utils.Tensor(name, array) for name, array in outcome.items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses


def _request(model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]) -> Any:
    tensors = [pb_utils.Tensor(name, array) for name, array in inputs.items()]
    return pb_utils.InferenceRequest(model_name=model, requested_output_names=list(outputs), inputs=tensors)


def infer(model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]) -> dict[str, NDArray[Any]]:
    """One BLS call to `model`; its response's error raises BlsError here."""
    return checked_outputs(model, _request(model, inputs, outputs).exec(), outputs)


async def infer_async(
    model: str, inputs: Mapping[str, NDArray[Any]], outputs: Sequence[str]
) -> dict[str, NDArray[Any]]:
    """One BLS call to `model` from an async execute (calls in flight together); errors as `infer`."""
    return checked_outputs(model, await _request(model, inputs, outputs).async_exec(), outputs)


def numpy_dtype(triton_type: str) -> np.dtype:
    """The numpy dtype of a config's data_type ("TYPE_FP32")."""
    return np.dtype(pb_utils.triton_string_to_numpy(triton_type))
