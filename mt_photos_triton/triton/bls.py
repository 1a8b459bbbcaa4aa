"""What a BLS call's response must be checked for: its own error, and the outputs asked of it.

Pure (the response is duck-typed as python_backend's InferenceResponse): python_backend.infer and
infer_async run the call and hand their response here, the one place its error is looked at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numpy.typing import NDArray


class BlsError(RuntimeError):
    """A model this one called answered with an error (an internal failure of the caller's requests)."""

    def __init__(self, model: str, message: str) -> None:
        super().__init__(f"{model}: {message}")
        self.model = model


def checked_outputs(model: str, response: Any, outputs: Sequence[str]) -> dict[str, NDArray[Any]]:
    """The named outputs of the response `model` just gave, or BlsError when it carries an error or lacks one."""
    if response.has_error():
        raise BlsError(model, response.error().message())
    tensors = {tensor.name(): tensor for tensor in response.output_tensors()}
    missing = [name for name in outputs if name not in tensors]
    if missing:
        raise BlsError(model, f"the response lacks outputs {missing}")
    return {name: tensors[name].as_numpy() for name in outputs}
