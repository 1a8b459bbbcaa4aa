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

from collections.abc import Sequence
from typing import Any

import numpy as np

from mt_photos_triton.pipelines import ocr
from mt_photos_triton.triton.answers import Answers
from mt_photos_triton.triton.parameters import ModelConfig
from mt_photos_triton.triton.python_backend import infer_async, input_array, respond
from mt_photos_triton.triton.rows import RowResult, gather_rows

Work = list[tuple[int, ocr.OcrJob]]  # (request index, one image's job)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = ModelConfig.from_args(args)
        self.name = config.name
        self.params = ocr.OcrParameters.from_config(config.parameters)
        self.postprocess = ocr.DBPostProcess(self.params)
        self.decoder = ocr.CTCDecoder.from_file(config.file("dictionary"))
        self.det_model, self.rec_model = config.names("bls_models")
        self.det_rows = config.integer("detector_rows_per_call")
        self.rec_rows = config.integer("recognizer_rows_per_call")

    async def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        jobs = answers.read(
            requests, lambda request: [ocr.OcrJob.start(bytes(data), self.params) for data in self._images(request)]
        )
        readable = [(index, job) for index, images in jobs.items() for job in images if job.detector_input is not None]
        await self._detect([(index, job, job.detector_input) for index, job in readable], answers)
        await self._recognise(readable, answers)
        # a second look, at a smaller scale, where nothing was read (large lettering: OcrJob.retry_input)
        retries = [(index, job, job.retry_input(self.params)) for index, job in readable if not answers.failed(index)]
        retries = [retry for retry in retries if retry[2] is not None]
        await self._detect(retries, answers)
        await self._recognise([(index, job) for index, job, _ in retries], answers)

        for index in answers.live(jobs):
            answers.give(index, ocr.pad_results([job.result() for job in jobs[index]]))
        return respond(answers)

    @staticmethod
    def _images(request: Any) -> np.ndarray:
        return input_array(request, "image_bytes").reshape(-1)

    async def _detect(self, work: list[tuple[int, ocr.OcrJob, np.ndarray]], answers: Answers) -> None:
        """One detector stage over every (request index, job, detector input), then DB post-processing."""
        inputs = [pixels[None] for *_, pixels in work]
        detections = await self._rows(self.det_model, ("probability",), inputs, self.det_rows)
        for (index, job, _), detection in zip(work, detections):
            if isinstance(detection, BaseException):
                answers.fail(index, detection)
            elif not answers.failed(index):
                with answers.guard([index]):
                    job.detected(detection["probability"][0], self.postprocess, self.params)

    async def _recognise(self, work: Work, answers: Answers) -> None:
        """One recogniser stage over every line of the given jobs, then CTC decoding and the score filter."""
        pending = [(index, batch) for index, job in work if not answers.failed(index) for batch in job.batches or ()]
        inputs = [batch.pixels for _, batch in pending]
        recognised = await self._rows(self.rec_model, ("classes", "confidences"), inputs, self.rec_rows)
        outputs: dict[int, ocr.RecognizerOutput] = {}  # by id() of the recogniser batch
        for (index, batch), output in zip(pending, recognised):
            if isinstance(output, BaseException):
                answers.fail(index, output)
            else:
                outputs[id(batch)] = (output["classes"], output["confidences"])
        for index, job in work:
            if not answers.failed(index):
                with answers.guard([index]):
                    job.recognised([outputs[id(batch)] for batch in job.batches or ()], self.decoder, self.params)

    async def _rows(self, model: str, outputs: Sequence[str], inputs: list[np.ndarray], limit: int) -> list[RowResult]:
        """`model` on the rows of all `inputs` (row packing: equal shapes together, `limit` rows a call)."""
        return await gather_rows(inputs, limit, lambda rows: infer_async(model, {"image": rows}, outputs))
