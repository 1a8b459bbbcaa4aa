"""`ocr`: encoded image bytes in, texts + scores + boxes out, for MT Photos' /ocr and direct clients.

BLS fan-out: decode → detector input → `ocr_det` → DB boxes → perspective crops → `ocr_rec`, one call per
recogniser batch (all batches of all images of this execute in flight together, so the recogniser's dynamic
batcher can merge them) → CTC decode → score filter → order. The maths is mt_photos_triton.pipelines.ocr.
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
        return list(await asyncio.gather(*(self._respond(request) for request in requests)))

    async def _respond(self, request: Any) -> Any:
        try:
            tensor = pb_utils.get_input_tensor_by_name(request, "image_bytes")
            if tensor is None:
                raise PipelineError(INVALID_INPUT, "input 'image_bytes' is missing")
            images = tensor.as_numpy().reshape(-1)
            results = await asyncio.gather(*(self._read(bytes(data)) for data in images))
        except PipelineError as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        except Exception as error:  # noqa: BLE001 - this request's failure, not the batch's
            log.exception("ocr request failed")
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"ocr: internal error ({type(error).__name__})"))
        outputs = ocr.pad_results(results)
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, array) for name, array in outputs.items()])

    async def _read(self, data: bytes) -> ocr.OcrResult:
        image = ocr.decode_image(data)
        if ocr.too_small(image, self.params):
            return ocr.OcrResult.empty()
        probability = await self._infer(self.det_model, ocr.detection_input(image, self.params)[None], "probability")
        boxes, _ = self.postprocess(probability[0, 0], image.width, image.height)
        if len(boxes) == 0:
            return ocr.OcrResult.empty()
        boxes = boxes[ocr.reading_order(boxes)]
        batches = ocr.recognition_batches(ocr.crop_lines(image, boxes), self.params)
        outputs = await asyncio.gather(*(self._infer(self.rec_model, b.pixels, "probabilities") for b in batches))
        return ocr.select_texts(boxes, ocr.collect_recognition(batches, outputs, self.decoder), self.params)

    @staticmethod
    async def _infer(model: str, image: np.ndarray, output: str) -> np.ndarray:
        """One BLS call with input `image`; raises when that call's response carries an error."""
        request = pb_utils.InferenceRequest(
            model_name=model, requested_output_names=[output], inputs=[pb_utils.Tensor("image", image)]
        )
        response = await request.async_exec()
        if response.has_error():
            raise RuntimeError(f"{model}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output).as_numpy()
