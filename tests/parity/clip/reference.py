"""The reference's CLIP image input, tokens and numbers, transcribed from immich machine-learning v2.5.6.

Sources (open-noodle/gallery at 3be8e265, "chore: version v2.5.6"; paths under machine-learning/immich_ml/):
models/transforms.py (decode_pil, resize_pil, crop_pil, to_numpy, normalize, clean_text, serialize_np_array),
models/clip/visual.py (OpenClipVisualEncoder._load, .transform, BaseCLIPVisualEncoder._predict),
models/clip/textual.py (OpenClipTextualEncoder._load_tokenizer, .tokenize, MClipTextualEncoder.tokenize),
and dev-fox-101/mt-photos-ml main.py (`/clip/img`: decode_pil on the upload; `/clip/*`: orjson.loads, then
"{:.16f}"). Each step names its upstream line. Plain Pillow, numpy, tokenizers and orjson only: nothing of
ours is imported or repeated here, so a parity test compares two implementations.

immich pins numpy>=2.3.4 (NEP 50 promotion) where we run numpy 1; `promotion("weak")` runs the numpy part
under NEP 50 so a test can show both give the same float32 operations.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image


@contextmanager
def promotion(state: str) -> Iterator[None]:
    """numpy's promotion rules for the block: "legacy" (numpy 1) or "weak" (NEP 50, numpy 2's)."""
    previous = np._get_promotion_state()  # type: ignore[attr-defined]
    np._set_promotion_state(state)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        np._set_promotion_state(previous)  # type: ignore[attr-defined]


def decode(data: bytes) -> Image.Image:
    """transforms.py:53-57 (decode_pil, called by mt-photos-ml main.py `/clip/img`): open, load, and convert
    to RGB unless already RGB. No EXIF transpose anywhere on this path."""
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def resize(image: Image.Image, size: int) -> Image.Image:
    """transforms.py:15-19 (resize_pil): the shorter side to `size`, the other int(ratio * size), BICUBIC
    whatever preprocess_cfg's interpolation says (visual.py:66 reads it, :73 never passes it)."""
    if image.width < image.height:
        target = (size, int((image.height / image.width) * size))
    else:
        target = (int((image.width / image.height) * size), size)
    return image.resize(target, resample=Image.Resampling.BICUBIC)


def crop(image: Image.Image, size: int) -> Image.Image:
    """transforms.py:23-29 (crop_pil): left and upper are int(half the side - half the size)."""
    left = int((image.size[0] / 2) - (size / 2))
    upper = int((image.size[1] / 2) - (size / 2))
    return image.crop((left, upper, left + size, upper + size))


def to_array(image: Image.Image) -> NDArray[np.float32]:
    """transforms.py:32-33 (to_numpy): a float32 HWC array of the bytes, then divided by the Python float 255.0."""
    pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.float32)
    return pixels / 255.0


def normalize(pixels: NDArray[np.float32], mean: NDArray[np.float32], std: NDArray[np.float32]) -> NDArray[np.float32]:
    """transforms.py:36-39 (normalize): subtract, then divide, broadcasting the float32 [3] arrays over HWC."""
    return (pixels - mean) / std


def channel_arrays(mean: list[float], std: list[float]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """visual.py:67-68 (_load): mean and std as float32 arrays of the JSON numbers."""
    return np.array(mean, dtype=np.float32), np.array(std, dtype=np.float32)


def reference_image_input(data: bytes, size: int, mean: list[float], std: list[float]) -> NDArray[np.float32]:
    """float32 [1, 3, size, size], the tensor the reference feeds its visual encoder (visual.py:72-77, transform:
    resize, crop, to_numpy, normalize, then HWC -> CHW and a leading batch axis of 1)."""
    mean32, std32 = channel_arrays(mean, std)
    pixels = normalize(to_array(crop(resize(decode(data), size), size)), mean32, std32)
    return np.expand_dims(pixels.transpose(2, 0, 1), 0)


def model_size(model_dir: Path) -> tuple[int, list[float], list[float]]:
    """visual.py:63-64 + 67-68: preprocess_cfg.json's size (the first element when a list), mean and std."""
    cfg = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text())
    size = cfg["size"][0] if isinstance(cfg["size"], list) else cfg["size"]
    return int(size), list(cfg["mean"]), list(cfg["std"])


def reference_model_image_input(data: bytes, model_dir: Path) -> NDArray[np.float32]:
    """reference_image_input with the model folder's own preprocess_cfg.json."""
    size, mean, std = model_size(model_dir)
    return reference_image_input(data, size, mean, std)


class ReferenceTokenizer:
    """The reference's tokenizer set-up and `tokenize`, for single-input and M-CLIP models."""

    def __init__(self, model_dir: Path, mclip: bool = False) -> None:
        from tokenizers import Tokenizer

        model_cfg = json.loads((model_dir / "config.json").read_text())
        text_cfg = model_cfg["text_cfg"]
        context_length = text_cfg.get("context_length", 77)  # textual.py:87
        pad_token = json.loads((model_dir / "textual" / "tokenizer_config.json").read_text())["pad_token"]  # :88
        self.tokenizer = Tokenizer.from_file((model_dir / "textual" / "tokenizer.json").as_posix())  # :90
        pad_id = self.tokenizer.token_to_id(pad_token)  # :92
        self.tokenizer.enable_padding(length=context_length, pad_token=pad_token, pad_id=pad_id)  # :93
        self.tokenizer.enable_truncation(max_length=context_length)  # :94
        kwargs = text_cfg.get("tokenizer_kwargs")
        self.canonicalize = kwargs is not None and kwargs.get("clean") == "canonicalize"  # textual.py:31-32
        self.mclip = mclip

    @staticmethod
    def clean(text: str, canonicalize: bool) -> str:
        """transforms.py:70-74 (clean_text): whitespace runs to one space; optionally no punctuation, lower case."""
        import string

        text = " ".join(text.split())
        if canonicalize:
            text = text.translate(str.maketrans("", "", string.punctuation)).lower()
        return text

    def __call__(self, text: str) -> dict[str, NDArray[np.int32]]:
        tokens = self.tokenizer.encode(self.clean(text, self.canonicalize))  # textual.py:99 + 109 (or 115-116)
        if self.mclip:  # textual.py:117-120
            return {
                "input_ids": np.array([tokens.ids], dtype=np.int32),
                "attention_mask": np.array([tokens.attention_mask], dtype=np.int32),
            }
        return {"text": np.array([tokens.ids], dtype=np.int32)}  # textual.py:110


def reference_result_strings(embedding: NDArray[np.float32]) -> list[str]:
    """What MT Photos stores from the reference: transforms.py:79-80 (orjson with OPT_SERIALIZE_NUMPY), then
    mt-photos-ml main.py `/clip/img` and `/clip/txt`: orjson.loads and "{:.16f}" of each number."""
    import orjson

    values = orjson.loads(orjson.dumps(np.asarray(embedding, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY))
    return ["{:.16f}".format(v) for v in values]
