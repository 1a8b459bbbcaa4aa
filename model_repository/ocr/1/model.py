"""`ocr`: encoded image bytes in, texts + scores + boxes out, for MT Photos' /ocr and direct clients.

BLS fan-out: decode → detector input → `ocr_det` → DB boxes → perspective crops → `ocr_rec` → CTC decode →
score filter → order. The maths is mt_photos_triton.pipelines.ocr*. The stages run for all images of an
execute (this model's dynamic batch) together, and each stage's inputs of equal shape across those images go
to the model together, split into calls of at most `detector_rows_per_call` / `recognizer_rows_per_call` rows
(on CPU small runs are fastest per row; on a GPU raise them to the models' max batch sizes).
The models called are not dynamically batched themselves: merging here, where all shapes are known, lets the
rows per call be chosen (a batcher merges only neighbouring equal shapes, into runs as large as it finds).
Each request may carry several images; outputs are padded to the largest count, with `count` per image.
Optional inputs `box_threshold`, `max_resolution` and `min_text_score` (one per image, or one for all of a
request's images) replace the config's numbers for that request (immich's per-request options).
The GPU variant's config (configs/gpu.pbtxt) also names `rec_width_buckets`: recogniser batches are then padded
up to those widths, which the recogniser's TensorRT profile spans (docs/gpu.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mt_photos_triton.errors import INVALID_INPUT, PipelineError
from mt_photos_triton.pipelines.ocr import OcrJob, pad_results
from mt_photos_triton.pipelines.ocr_detection import DBPostProcess
from mt_photos_triton.pipelines.ocr_parameters import OcrOptions, OcrParameters, WidthBuckets
from mt_photos_triton.pipelines.ocr_recognition import CTCDecoder, RecognizerOutput
from mt_photos_triton.triton.answers import Answers
from mt_photos_triton.triton.parameters import ModelConfig
from mt_photos_triton.triton.python_backend import infer_async, input_array, optional_input, respond
from mt_photos_triton.triton.rows import RowResult, gather_rows

Work = list[tuple[int, OcrJob]]  # (request index, one image's job)
# optional per-request inputs → the OcrOptions field each one sets
OPTION_INPUTS = {"box_threshold": float, "max_resolution": int, "min_text_score": float}
OPTION_FIELDS = {"box_threshold": "box_threshold", "max_resolution": "det_limit_side", "min_text_score": "text_score_threshold"}


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = ModelConfig.from_args(args)
        self.name = config.name
        self.params = OcrParameters.from_config(config.parameters)
        self.buckets = WidthBuckets.from_config(config.parameters)  # None: each batch at its own width (CPU)
        self.postprocess = DBPostProcess(self.params)
        self.decoder = CTCDecoder.from_file(config.file("dictionary"))
        self.det_model, self.rec_model = config.names("bls_models")
        self.det_rows = config.integer("detector_rows_per_call")
        self.rec_rows = config.integer("recognizer_rows_per_call")

    async def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        jobs = answers.read(requests, self._start)
        readable = [(index, job) for index, images in jobs.items() for job in images if job.detector_input is not None]
        await self._detect([(index, job, job.detector_input) for index, job in readable], answers)
        await self._recognise(readable, answers)
        # a second look, at a smaller scale, where nothing was read (large lettering: OcrJob.retry_input)
        retries = [(index, job, job.retry_input(job.params)) for index, job in readable if not answers.failed(index)]
        retries = [retry for retry in retries if retry[2] is not None]
        await self._detect(retries, answers)
        await self._recognise([(index, job) for index, job, _ in retries], answers)

        for index in answers.live(jobs):
            answers.give(index, pad_results([job.result() for job in jobs[index]]))
        return respond(answers)

    def _start(self, request: Any) -> list[OcrJob]:
        """One job per image of the request, each read with its options applied to the config's numbers."""
        images = input_array(request, "image_bytes").reshape(-1)
        options = _options(request, len(images))
        return [OcrJob.start(bytes(data), o.applied(self.params), self.buckets) for data, o in zip(images, options)]

    async def _detect(self, work: list[tuple[int, OcrJob, np.ndarray]], answers: Answers) -> None:
        """One detector stage over every (request index, job, detector input), then DB post-processing."""
        inputs = [pixels[None] for *_, pixels in work]
        detections = await self._rows(self.det_model, ("probability",), inputs, self.det_rows)
        for (index, job, _), detection in zip(work, detections):
            if isinstance(detection, BaseException):
                answers.fail(index, detection)
            elif not answers.failed(index):
                with answers.guard([index]):
                    job.detected(detection["probability"][0], self.postprocess, job.params)

    async def _recognise(self, work: Work, answers: Answers) -> None:
        """One recogniser stage over every line of the given jobs, then CTC decoding and the score filter."""
        pending = [(index, batch) for index, job in work if not answers.failed(index) for batch in job.batches or ()]
        inputs = [batch.pixels for _, batch in pending]
        recognised = await self._rows(self.rec_model, ("classes", "confidences"), inputs, self.rec_rows)
        outputs: dict[int, RecognizerOutput] = {}  # by id() of the recogniser batch
        for (index, batch), output in zip(pending, recognised):
            if isinstance(output, BaseException):
                answers.fail(index, output)
            else:
                outputs[id(batch)] = (output["classes"], output["confidences"])
        for index, job in work:
            if not answers.failed(index):
                with answers.guard([index]):
                    job.recognised([outputs[id(batch)] for batch in job.batches or ()], self.decoder, job.params)

    async def _rows(self, model: str, outputs: Sequence[str], inputs: list[np.ndarray], limit: int) -> list[RowResult]:
        """`model` on the rows of all `inputs` (row packing: equal shapes together, `limit` rows a call)."""
        return await gather_rows(inputs, limit, lambda rows: infer_async(model, {"image": rows}, outputs))


def _options(request: Any, images: int) -> list[OcrOptions]:
    """Per image, the optional inputs the request carries (each: one value per image, or one for all)."""
    given: dict[str, list[Any]] = {}
    for name, kind in OPTION_INPUTS.items():
        values = optional_input(request, name)
        if values is None:
            continue
        values = values.reshape(-1)
        if len(values) not in (1, images):
            raise PipelineError(INVALID_INPUT, f"{images} images but {len(values)} values of '{name}'")
        given[OPTION_FIELDS[name]] = [kind(v) for v in (values if len(values) == images else [values[0]] * images)]
    return [OcrOptions(**{key: column[i] for key, column in given.items()}) for i in range(images)]
