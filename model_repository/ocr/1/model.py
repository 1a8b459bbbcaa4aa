"""`ocr`: encoded image bytes in, texts + scores + boxes out, for MT Photos' /ocr and direct clients.

BLS fan-out: decode → detector input → `ocr_det` → DB boxes → perspective crops → `ocr_rec`, one call per
recogniser batch → CTC decode → score filter → order. The maths is mt_photos_triton.pipelines.ocr. The stages
run for all images of an execute together, and each stage's model calls are all in flight at once, so the
dynamic batchers of `ocr_det` (equal sizes) and `ocr_rec` (equal widths) merge them across requests.
Each request may carry several images; outputs are padded to the largest count, with `count` per image.
"""

from __future__ import annotations

import asyncio
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
        """One detector stage: every (request index, job, detector input) sent at once, then DB post-processing."""
        # the dynamic batchers merge only neighbours of equal shape in their queue: send equal shapes together
        work = sorted(work, key=lambda item: item[2].shape)
        detections = await self._all(self.det_model, ("probability",), [pixels[None] for _, _, pixels in work])
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
        # equal widths together, so the batcher can merge calls of concurrent requests
        pending = sorted(
            ((index, job, batch) for index, job in work if index not in failures for batch in job.batches or []),
            key=lambda item: item[2].pixels.shape[3],
        )
        recognised = await self._all(self.rec_model, ("classes", "confidences"), [batch.pixels for _, _, batch in pending])
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

    async def _all(self, model: str, outputs: tuple[str, ...], images: list[np.ndarray]) -> list[Any]:
        """All these calls of `model` in flight together; each result is its outputs or its exception."""
        return list(await asyncio.gather(*(self._infer(model, image, outputs) for image in images), return_exceptions=True))

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
