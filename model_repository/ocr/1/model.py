"""`ocr`: encoded image bytes in, texts + scores + boxes out, for MT Photos' /ocr and direct clients.

BLS fan-out: decode → detector input → `ocr_det` → DB boxes → perspective crops → `ocr_rec` → CTC decode →
score filter → order. The maths is mt_photos_triton.pipelines.ocr. The stages run for all images of an
execute (this model's dynamic batch) together, and each stage's inputs of equal shape across those images go
to the model together, split into calls of at most `detector_rows_per_call` / `recognizer_rows_per_call` rows
(on CPU small runs are fastest per row; on a GPU raise them to the models' max batch sizes).
The models called are not dynamically batched themselves: merging here, where all shapes are known, lets the
rows per call be chosen (a batcher merges only neighbouring equal shapes, into runs as large as it finds).
Each request may carry several images; outputs are padded to the largest count, with `count` per image.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines import ocr

log = logging.getLogger("ocr")


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config["parameters"].items()}
        self.params = ocr.OcrParameters.from_config(parameters)
        self.postprocess = ocr.DBPostProcess(self.params)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.decoder = ocr.CTCDecoder.from_file(version_dir / parameters["dictionary"])
        self.det_model, self.rec_model = (name.strip() for name in parameters["bls_models"].split(","))
        self.det_rows = int(parameters["detector_rows_per_call"])
        self.rec_rows = int(parameters["recognizer_rows_per_call"])

    async def execute(self, requests: list[Any]) -> list[Any]:
        failures: dict[int, Exception] = {}
        jobs: dict[int, list[ocr.OcrJob]] = {}
        for index, request in enumerate(requests):
            try:
                jobs[index] = [ocr.OcrJob.start(bytes(data), self.params) for data in self._images(request)]
            except Exception as error:  # noqa: BLE001 - this request's failure, not the batch's
                failures[index] = error

        readable = [
            (index, job) for index, request_jobs in jobs.items() for job in request_jobs if job.detector_input is not None
        ]
        await self._detect([(index, job, job.detector_input) for index, job in readable], failures)
        await self._recognise(readable, failures)
        # a second look, at a smaller scale, where nothing was read (large lettering: OcrJob.retry_input)
        retries = [(index, job, job.retry_input(self.params)) for index, job in readable if index not in failures]
        retries = [retry for retry in retries if retry[2] is not None]
        await self._detect(retries, failures)
        await self._recognise([(index, job) for index, job, _ in retries], failures)

        responses = []
        for index in range(len(requests)):
            if index in failures:
                responses.append(self._error(failures[index]))
                continue
            results = [job.result() for job in jobs[index]]
            tensors = [pb_utils.Tensor(name, array) for name, array in ocr.pad_results(results).items()]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    async def _detect(self, work: list[tuple[int, Any, np.ndarray]], failures: dict[int, Exception]) -> None:
        """One detector stage over every (request index, job, detector input), then DB post-processing."""
        detections = await self._batched(
            self.det_model, ("probability",), [pixels[None] for _, _, pixels in work], self.det_rows
        )
        for (index, job, _), detection in zip(work, detections):
            if isinstance(detection, Exception):
                failures.setdefault(index, detection)
            elif index not in failures:
                try:
                    job.detected(detection[0][0], self.postprocess, self.params)
                except Exception as error:  # noqa: BLE001 - this request's failure, not the batch's
                    failures[index] = error

    async def _recognise(self, work: list[tuple[int, Any]], failures: dict[int, Exception]) -> None:
        """One recogniser stage over every line of the given jobs, then CTC decoding and the score filter."""
        pending = [(index, job, batch) for index, job in work if index not in failures for batch in job.batches or []]
        recognised = await self._batched(
            self.rec_model, ("classes", "confidences"), [batch.pixels for _, _, batch in pending], self.rec_rows
        )
        outputs: dict[int, Any] = {}  # (classes, confidences) by id() of the recogniser batch
        for (index, _, batch), output in zip(pending, recognised):
            if isinstance(output, Exception):
                failures.setdefault(index, output)
            outputs[id(batch)] = output
        for index, job in work:
            if index not in failures:
                job.recognised([outputs[id(batch)] for batch in job.batches or []], self.decoder, self.params)

    @staticmethod
    def _images(request: Any) -> np.ndarray:
        tensor = pb_utils.get_input_tensor_by_name(request, "image_bytes")
        if tensor is None:
            raise PipelineError(INVALID_INPUT, "input 'image_bytes' is missing")
        return tensor.as_numpy().reshape(-1)

    @staticmethod
    def _error(error: Exception) -> Any:
        if isinstance(error, PipelineError):
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        log.error("ocr request failed: %s", error)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"ocr: internal error ({type(error).__name__})"))

    async def _batched(self, model: str, outputs: tuple[str, ...], images: list[np.ndarray], limit: int) -> list[Any]:
        """`model` on the rows of all `images`: rows of equal shape together, `limit` rows a call, all calls in
        flight at once. One result per image: its rows of each output, or the exception of a call it was in."""
        calls: list[tuple[np.ndarray, int, list[tuple[int, int, int]]]] = []  # rows, first row, [(image, start, end)]
        by_shape = sorted(range(len(images)), key=lambda i: images[i].shape[1:])
        for _, group in itertools.groupby(by_shape, key=lambda i: images[i].shape[1:]):
            members = list(group)
            ends = np.cumsum([len(images[i]) for i in members])
            spans = [(index, int(end) - len(images[index]), int(end)) for index, end in zip(members, ends)]
            rows = np.concatenate([images[i] for i in members])
            for first in range(0, len(rows), limit):
                last = first + limit
                inside = [(i, max(a, first), min(b, last)) for i, a, b in spans if a < last and b > first]
                calls.append((rows[first:last], first, inside))
        answers = await asyncio.gather(*(self._infer(model, rows, outputs) for rows, *_ in calls), return_exceptions=True)
        pieces: list[list[Any]] = [[] for _ in images]
        for (_, first, inside), answer in zip(calls, answers):
            for index, a, b in inside:
                failed = isinstance(answer, BaseException)
                pieces[index].append(answer if failed else tuple(o[a - first : b - first] for o in answer))
        results: list[Any] = []
        for parts in pieces:
            failed = [part for part in parts if isinstance(part, BaseException)]
            results.append(failed[0] if failed else tuple(np.concatenate(column) for column in zip(*parts)))
        return results

    @staticmethod
    async def _infer(model: str, image: np.ndarray, outputs: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """One BLS call with input `image`; raises when that call's response carries an error."""
        request = pb_utils.InferenceRequest(
            model_name=model, requested_output_names=list(outputs), inputs=[pb_utils.Tensor("image", image)]
        )
        response = await request.async_exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return tuple(pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs)
