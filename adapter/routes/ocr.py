"""`POST /ocr`: the upload's header is checked here, the rest happens in the Triton model `ocr`."""

from __future__ import annotations

from typing import Any

import numpy as np
from litestar import Request, Response, post
from numpy.typing import NDArray

from adapter.backend import BackendError
from adapter.deps import Backend
from adapter.responses import backend_error_response, json_response, pipeline_error_response, read_upload
from adapter.schemas import OCR_ANSWER, UPLOAD_BODY, inference_operation
from mt_photos_triton.errors import PipelineError
from mt_photos_triton.families import OCR_MODEL
from mt_photos_triton.pipelines.ocr import check_format

OUTPUTS = ("texts", "scores", "boxes", "count")
# RapidOCR's text scores have 5 decimals; rounding the float32 back to them gives the reference's float64,
# so `:.2f` rounds the same way (0.995 must print 0.99, as the reference's 0.995 does)
SCORE_DECIMALS = 5
BOX_DECIMALS = 2


def format_score(score: float) -> str:
    return f"{round(float(score), SCORE_DECIMALS):.2f}"


def format_coordinate(value: float) -> str:
    return str(round(float(value), BOX_DECIMALS))


def ocr_result(outputs: dict[str, NDArray[Any]]) -> dict[str, list[Any]]:
    """mt-photos-ml's `/ocr` result for the first image of the `ocr` model's outputs (already filtered
    and ordered by the model): x, y = top-left; width = top-right.x - top-left.x; height = bottom-right.y - top-left.y."""
    count = int(outputs["count"][0, 0])
    texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in outputs["texts"][0, :count]]
    scores = outputs["scores"][0, :count]
    boxes = outputs["boxes"][0, :count].astype(np.float64)
    return {
        "texts": texts,
        "scores": [format_score(s) for s in scores],
        "boxes": [
            {
                "x": format_coordinate(box[0, 0]),
                "y": format_coordinate(box[0, 1]),
                "width": format_coordinate(box[1, 0] - box[0, 0]),
                "height": format_coordinate(box[2, 1] - box[0, 1]),
            }
            for box in boxes
        ],
    }


@post("/ocr", status_code=200, operation_class=inference_operation(UPLOAD_BODY, OCR_ANSWER))
async def ocr(request: Request[Any, Any, Any], backend: Backend) -> Response[bytes]:
    data = await read_upload(request)
    if isinstance(data, Response):
        return data
    try:
        check_format(data)  # header only: format allow-list and the 10000 px limit, before any decoding
    except PipelineError as error:
        return pipeline_error_response(error)
    try:
        outputs = await backend.infer(OCR_MODEL, {"image_bytes": np.array([[data]], dtype=np.object_)}, OUTPUTS)
    except BackendError as error:
        return backend_error_response(error, route="/ocr")
    return json_response({"result": ocr_result(outputs)})


HANDLERS: list[Any] = [ocr]
