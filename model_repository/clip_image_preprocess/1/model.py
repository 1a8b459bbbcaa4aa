"""clip_image_preprocess: encoded image bytes -> float32 [3, S, S], the reference's CLIP transform.

Thin: tensors in, mt_photos_triton.pipelines.clip.ImageTransform, tensors out. Size, mean and std come
from the config parameters that export wrote from the model's preprocess_cfg.json. The images of one
execution (all requests the dynamic batcher grouped) are decoded in parallel threads: Pillow releases
the GIL while it decodes and resizes. A lone image, when a core is free, has its resize split over two
threads instead (pipelines.clip.resize_crop_in_halves: the same bytes).
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from mt_photos_triton.errors import PipelineError
from mt_photos_triton.pipelines.clip import ImageTransform, parse_floats
from mt_photos_triton.procfs import core_to_spare


def _parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {key: value["string_value"] for key, value in config["parameters"].items()}


def _error(message: str) -> Any:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        parameters = _parameters(args)
        self.transform = ImageTransform(
            int(parameters["size"]), parse_floats(parameters["mean"]), parse_floats(parameters["std"])
        )
        threads = int(parameters["decode_threads"])
        self.pool = ThreadPoolExecutor(max_workers=threads)
        # the second half of a lone image's resize: its own thread, so a pool job never waits on a pool job
        self.helper = ThreadPoolExecutor(max_workers=1) if threads > 1 else None

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs: list[Any] = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "image_bytes")
            inputs.append("input 'image_bytes' is missing" if tensor is None else tensor.as_numpy().reshape(-1))
        # a lone image while a core is free (a user waiting; at concurrency 1 the other core is nearly always free,
        # at 4 nearly never: there the split would only add its copies)
        lone = sum(len(items) for items in inputs if not isinstance(items, str)) == 1
        helper = self.helper if lone and core_to_spare() else None
        jobs: list[list[Future] | str] = [
            items if isinstance(items, str) else [self.pool.submit(self.transform, bytes(item), helper) for item in items]
            for items in inputs
        ]

        responses = []
        for job in jobs:
            if isinstance(job, str):
                responses.append(_error(job))
                continue
            try:
                images = np.stack([future.result() for future in job])
            except PipelineError as error:
                responses.append(_error(str(error)))
                continue
            except Exception as error:  # noqa: BLE001 - this request fails, the batch goes on
                responses.append(_error(f"preprocessing failed: {type(error).__name__}"))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("image", images)]))
        return responses

    def finalize(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.helper is not None:
            self.helper.shutdown(wait=False, cancel_futures=True)
