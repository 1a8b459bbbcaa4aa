"""The reference's CLIP pre-processing and tokenisation, written out as immich v2.5.6 does them.

immich machine-learning `models/transforms.py` (decode_pil, resize_pil, crop_pil, to_numpy, normalize,
clean_text) and `models/clip/textual.py` (OpenClipTextualEncoder._load_tokenizer / tokenize,
MClipTextualEncoder.tokenize): plain Pillow, numpy and `tokenizers`, deliberately independent of our
pipeline module, so parity tests compare two implementations.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def reference_image_input(data: bytes, size: int, mean: list[float], std: list[float]) -> NDArray[np.float32]:
    """float32 [1, 3, size, size] as the reference feeds its visual encoder."""
    image = Image.open(io.BytesIO(data))
    image.load()
    if not image.mode == "RGB":
        image = image.convert("RGB")
    if image.width < image.height:
        image = image.resize((size, int((image.height / image.width) * size)), resample=Image.Resampling.BICUBIC)
    else:
        image = image.resize((int((image.width / image.height) * size), size), resample=Image.Resampling.BICUBIC)
    left = int((image.size[0] / 2) - (size / 2))
    upper = int((image.size[1] / 2) - (size / 2))
    image = image.crop((left, upper, left + size, upper + size))
    array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.float32) / 255.0
    mean32 = np.array(mean, dtype=np.float32)
    std32 = np.array(std, dtype=np.float32)
    array *= 1.0 / std32
    array -= mean32 / std32
    return array.transpose(2, 0, 1)[None]


def reference_model_image_input(data: bytes, model_dir: Path) -> NDArray[np.float32]:
    cfg = json.loads((model_dir / "visual" / "preprocess_cfg.json").read_text())
    size = cfg["size"][0] if isinstance(cfg["size"], list) else cfg["size"]
    return reference_image_input(data, size, cfg["mean"], cfg["std"])


class ReferenceTokenizer:
    """immich's tokenizer set-up and its `tokenize` for single-input and M-CLIP models."""

    def __init__(self, model_dir: Path, mclip: bool = False) -> None:
        from tokenizers import Tokenizer

        text_cfg = json.loads((model_dir / "config.json").read_text())["text_cfg"]
        context_length = text_cfg.get("context_length", 77)
        pad_token = json.loads((model_dir / "textual" / "tokenizer_config.json").read_text())["pad_token"]
        self.tokenizer = Tokenizer.from_file((model_dir / "textual" / "tokenizer.json").as_posix())
        pad_id = self.tokenizer.token_to_id(pad_token)
        self.tokenizer.enable_padding(length=context_length, pad_token=pad_token, pad_id=pad_id)
        self.tokenizer.enable_truncation(max_length=context_length)
        self.mclip = mclip

    def __call__(self, text: str) -> dict[str, NDArray[np.int32]]:
        text = " ".join(text.split())
        tokens = self.tokenizer.encode(text)
        if self.mclip:
            return {
                "input_ids": np.array([tokens.ids], dtype=np.int32),
                "attention_mask": np.array([tokens.attention_mask], dtype=np.int32),
            }
        return {"text": np.array([tokens.ids], dtype=np.int32)}


def reference_result_strings(embedding: NDArray[np.float32]) -> list[str]:
    """What MT Photos stores from the reference: orjson's float32 JSON, read back, printed with 16 decimals."""
    import orjson

    values = json.loads(orjson.dumps(np.asarray(embedding, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY))
    return ["{:.16f}".format(v) for v in values]
