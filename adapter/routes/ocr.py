"""`POST /ocr`: the upload's header is checked here, the rest happens in the Triton model `ocr`."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post

from adapter.deps import Inference
from adapter.inference import Outputs, Route
from adapter.schemas import OCR_ANSWER, UPLOAD_BODY, inference_operation
from adapter.wire import ocr_result
from mt_photos_triton.families import OCR_MODEL
from mt_photos_triton.pipelines.images import OCR_LIMITS

OCR = Route("/ocr", OCR_MODEL, ("texts", "scores", "boxes", "count"), limits=OCR_LIMITS)


async def texts(outputs: Outputs) -> dict[str, Any]:
    return {"result": ocr_result(outputs)}


@post("/ocr", status_code=200, operation_class=inference_operation(UPLOAD_BODY, OCR_ANSWER))
async def ocr(request: Request[Any, Any, Any], inference: Inference) -> Response[bytes]:
    return await inference.image(request, OCR, texts)


HANDLERS: list[Any] = [ocr]
