"""One answer per request, in order, each failing alone; the one error policy a direct Triton client reads."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mt_photos_triton.errors import INVALID_IMAGE, PipelineError, parse_code
from mt_photos_triton.triton.answers import Answers, error_message, split, split_outputs


def test_a_pipeline_error_answers_with_its_own_code_and_detail(caplog: pytest.LogCaptureFixture) -> None:
    message = error_message("ocr", PipelineError(INVALID_IMAGE, "cannot identify image"))
    assert message == "invalid_image: cannot identify image"
    assert parse_code(message) == INVALID_IMAGE
    assert not caplog.records  # a refused request is the client's, not a failure to log


def test_anything_else_is_logged_with_its_traceback_and_answered_generically(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise KeyError("/secret/path/model.onnx")
    except KeyError as error:
        message = error_message("faces", error)
    assert message == "faces: internal error (KeyError)"
    assert "secret" not in message and parse_code(message) is None
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "secret" in caplog.text and "Traceback" in caplog.text


class Request:
    def __init__(self, value: object) -> None:
        self.value = value


def reader(request: Request) -> int:
    if request.value == "bad image":
        raise PipelineError(INVALID_IMAGE, "undecodable")
    if not isinstance(request.value, int):
        raise TypeError(f"cannot read {request.value!r}")
    return request.value


def test_each_request_fails_alone_and_the_others_are_answered_in_order(caplog: pytest.LogCaptureFixture) -> None:
    requests = [Request(1), Request("bad image"), Request(3), Request(None), Request(5)]
    answers = Answers("m", len(requests))
    values = answers.read(requests, reader)
    assert list(values) == [0, 2, 4]
    for index, value in values.items():
        answers.give(index, {"out": np.array([value])})
    outcomes = answers.outcomes()
    assert [o["out"][0] if isinstance(o, dict) else o for o in outcomes] == [
        1, "invalid_image: undecodable", 3, "m: internal error (TypeError)", 5,
    ]
    assert "cannot read None" in caplog.text  # the TypeError's text is logged, never answered


def test_a_guarded_step_fails_exactly_its_requests_and_the_first_error_wins() -> None:
    answers = Answers("m", 4)
    answers.fail(0, PipelineError(INVALID_IMAGE, "first"))
    with answers.guard([0, 1]):
        raise RuntimeError("a shared step")
    answers.give(2, {"out": np.zeros(1)})
    answers.give(3, {"out": np.ones(1)})
    with answers.guard([3]):
        pass  # nothing raised: nothing fails
    assert answers.live(range(4)) == [2, 3]
    outcomes = answers.outcomes()
    assert outcomes[0] == "invalid_image: first"
    assert outcomes[1] == "m: internal error (RuntimeError)"
    assert isinstance(outcomes[2], dict) and isinstance(outcomes[3], dict)


def test_one_error_of_many_requests_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    answers = Answers("m", 3)
    with answers.guard(range(3)):
        raise ValueError("a batch-wide failure")
    assert answers.outcomes() == ["m: internal error (ValueError)"] * 3
    assert len(caplog.records) == 1


def test_a_request_left_unanswered_gets_an_internal_error_not_a_missing_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = Answers("m", 2)
    answers.give(0, {"out": np.zeros(1)})
    outcomes = answers.outcomes()
    assert len(outcomes) == 2 and outcomes[1] == "m: internal error (Unanswered)"
    assert "request 1 of 2" in caplog.text


def test_a_failed_step_for_no_request_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    answers = Answers("m", 1)
    with answers.guard([]):
        raise RuntimeError("nobody's step")
    assert "nobody's step" in caplog.text


def test_split_cuts_lists_and_arrays_back_per_request() -> None:
    assert split(["a", "b", "c", "d"], [1, 0, 3]) == [["a"], [], ["b", "c", "d"]]
    pieces = split_outputs({"ids": np.arange(10).reshape(5, 2), "mask": np.ones((5, 2))}, [2, 3])
    np.testing.assert_array_equal(pieces[0]["ids"], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(pieces[1]["ids"], [[4, 5], [6, 7], [8, 9]])
    assert pieces[1]["mask"].shape == (3, 2)
    with pytest.raises(ValueError, match="do not make up"):
        split([1, 2, 3], [1, 1])
