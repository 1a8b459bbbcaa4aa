"""The check every BLS call's response goes through (python_backend.infer / infer_async hand it here)."""

from __future__ import annotations

import numpy as np
import pytest

from mt_photos_triton.triton.answers import error_message
from mt_photos_triton.triton.bls import BlsError, checked_outputs


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class Error:
    def __init__(self, text: str) -> None:
        self.text = text

    def message(self) -> str:
        return self.text


class Response:
    """The shape of python_backend's InferenceResponse that the check reads."""

    def __init__(self, tensors: list[Tensor], error: str | None = None) -> None:
        self.tensors, self._error = tensors, error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> Error | None:
        return Error(self._error) if self._error is not None else None

    def output_tensors(self) -> list[Tensor]:
        return self.tensors


def test_the_named_outputs_of_a_good_response() -> None:
    response = Response([Tensor("scores", np.ones(2)), Tensor("boxes", np.zeros((2, 4)))])
    outputs = checked_outputs("face_det", response, ["boxes", "scores"])
    assert list(outputs) == ["boxes", "scores"] and outputs["boxes"].shape == (2, 4)


def test_an_error_response_raises_with_the_model_named() -> None:
    with pytest.raises(BlsError, match="^ocr_rec: in ocr_rec, out of memory$") as caught:
        checked_outputs("ocr_rec", Response([], error="in ocr_rec, out of memory"), ["classes"])
    assert caught.value.model == "ocr_rec"
    # for the caller's clients an internal failure: the policy answers it generically
    assert error_message("ocr", caught.value) == "ocr: internal error (BlsError)"


def test_a_response_lacking_an_output_raises() -> None:
    with pytest.raises(BlsError, match=r"lacks outputs \['confidences'\]"):
        checked_outputs("ocr_rec", Response([Tensor("classes", np.zeros(1))]), ["classes", "confidences"])
