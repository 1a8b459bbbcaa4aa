"""clip_image_preprocess: encoded image bytes -> float32 [3, S, S], the reference's CLIP transform.

Thin: tensors in, mt_photos_triton.pipelines.clip.ImageTransform, tensors out. Size, mean and std come
from the config parameters that export wrote from the model's preprocess_cfg.json; decoder, resize and
interpolation from the CLIP profile export recorded there (pipelines/clip_profile.py: absent = immich's). The images of one
execution (all requests the dynamic batcher grouped) are decoded in parallel threads: Pillow releases
the GIL while it decodes and resizes. A lone image, when a core is free, has its resize split over two
threads instead (pipelines.clip.resize_crop_in_halves: the same bytes).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mt_photos_triton.pipelines.clip import ImageTransform, parse_floats
from mt_photos_triton.pipelines.clip_profile import read_profile
from mt_photos_triton.procfs import core_to_spare
from mt_photos_triton.triton.answers import Answers
from mt_photos_triton.triton.parameters import ModelConfig
from mt_photos_triton.triton.python_backend import input_array, respond


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = ModelConfig.from_args(args)
        self.name = config.name
        self.transform = ImageTransform(
            config.integer("size"), parse_floats(config.text("mean")), parse_floats(config.text("std")),
            read_profile(config.parameters),
        )
        threads = config.integer("decode_threads")
        self.pool = ThreadPoolExecutor(max_workers=threads)
        # the second half of a lone image's resize: its own thread, so a pool job never waits on a pool job
        self.helper = ThreadPoolExecutor(max_workers=1) if threads > 1 else None

    def execute(self, requests: list[Any]) -> list[Any]:
        answers = Answers(self.name, len(requests))
        images = answers.read(requests, lambda request: input_array(request, "image_bytes").reshape(-1))
        # a lone image while a core is free (a user waiting; at concurrency 1 the other core is nearly always free,
        # at 4 nearly never: there the split would only add its copies)
        lone = sum(len(items) for items in images.values()) == 1
        helper = self.helper if lone and core_to_spare() else None
        jobs = {
            index: [self.pool.submit(self.transform, bytes(item), helper) for item in items]
            for index, items in images.items()
        }
        for index, futures in jobs.items():
            with answers.guard([index]):
                answers.give(index, {"image": np.stack([future.result() for future in futures])})
        return respond(answers)

    def finalize(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.helper is not None:
            self.helper.shutdown(wait=False, cancel_futures=True)
