"""CLIP smart search maths: the image transform, the tokeniser and the number format of `/clip/*`.

Pure functions and small configured callables (no Triton import): the Triton python models, the adapter,
the bench and the tests all use this very code. Which decoder, resize, interpolation and tokeniser a model
gets is its CLIP profile (pipelines/clip_profile.py), recorded by export in the configs.
"""

from __future__ import annotations

import io
import string
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from mt_photos_triton.errors import INVALID_IMAGE, PipelineError
from mt_photos_triton.pipelines.clip_bert import BertTokenizer
from mt_photos_triton.pipelines.clip_profile import (
    BERT_VOCAB, BICUBIC, BILINEAR, HF_SHORTEST_CROP, IMMICH, OPENCV_BGR, SHORTEST_CROP, ClipProfile,
)
from mt_photos_triton.pipelines.images import probe
from mt_photos_triton.pipelines.languages import with_language

UINT8_LEVELS = 256
# the largest image whose resize is split over two threads: the split copies the image once, in two halves (4 bytes
# a pixel: 92 MiB here). A 200 MP photo's copies doubled its peak (1542 instead of ~800 MiB of growth for its decode
# and resize), and its split resize took 0.76-2.28 s against 1.06-1.14 s in one call
# (reading each half in place through resize's `box` instead adds a pass at scale 1: 1 ms more a half at 1280x960)
SPLIT_MAX_PIXELS = 24_000_000
RESAMPLING = {BICUBIC: Image.Resampling.BICUBIC, BILINEAR: Image.Resampling.BILINEAR}
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def parse_floats(text: str) -> NDArray[np.float32]:
    """A comma-separated parameter ("0.481,0.457,0.408") as float32, as the reference reads its JSON lists."""
    return np.array([float(v) for v in text.split(",") if v.strip()], dtype=np.float32)


def format_floats(values: Sequence[float]) -> str:
    """The inverse of parse_floats for config parameters (repr round-trips every JSON number)."""
    return ",".join(repr(float(v)) for v in values)


# ---------------------------------------------------------------------------------------------- image


def decode_rgb(data: bytes) -> Image.Image:
    """Header check first (size limit, allowed formats), then one Pillow decode to RGB.

    As the reference: no EXIF transpose, alpha dropped by convert("RGB"), any mode converted.
    """
    probe(data)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt data
        raise PipelineError(INVALID_IMAGE, f"undecodable image ({type(error).__name__})") from error
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_opencv_bgr(data: bytes) -> Image.Image:
    """Header check first, then OpenCV's colour decode, whose BGR array Pillow takes as RGB (channels swapped).

    mt-photos-ai onnx/server.py:170-171 (`cv2.imdecode(nparr, cv2.IMREAD_COLOR)`) and onnx/clip.py:29
    (`Image.fromarray` of that array): OpenCV applies the EXIF orientation and makes every image three 8-bit
    channels (grey repeated, palette expanded, alpha dropped, CMYK converted by libjpeg).
    """
    import cv2

    probe(data)
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise PipelineError(INVALID_IMAGE, "undecodable image (OpenCV)")
    return Image.fromarray(pixels)


def shortest_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Shorter side to `size`, the longer one truncated to int.

    immich machine-learning, models/transforms.py `resize_pil`: the same expression order, so the same ints.
    """
    if width < height:
        return size, int((height / width) * size)
    return int((width / height) * size), size


def hf_shortest_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Shorter side to `size`, the longer one int(size * long / short) (transformers image_transforms.py
    `get_resize_output_image_size`): one pixel more than shortest_side_size where the quotient is whole."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_shortest(
    image: Image.Image, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC,
    sides: Callable[[int, int, int], tuple[int, int]] = shortest_side_size,
) -> Image.Image:
    """Shorter side to `size` (shortest_side_size unless told); bicubic (antialiased) unless told."""
    return image.resize(sides(*image.size, size), resample=resample)


def centre_origin(width: int, height: int, size: int) -> tuple[int, int]:
    """Left and top of the centred `size`x`size` square: int(W/2 - size/2) (immich `crop_pil`)."""
    return int(width / 2 - size / 2), int(height / 2 - size / 2)


def crop_centre(image: Image.Image, size: int) -> Image.Image:
    left, top = centre_origin(*image.size, size)
    return image.crop((left, top, left + size, top + size))


def _resampled(
    image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int], resample: Image.Resampling
) -> Image.Image:
    return image.crop(box).resize(size, resample=resample)


def resize_crop_in_halves(
    image: Image.Image, size: int, helper: Executor, resample: Image.Resampling = Image.Resampling.BICUBIC,
    sides: Callable[[int, int, int], tuple[int, int]] = shortest_side_size,
) -> Image.Image:
    """crop_centre(resize_shortest(image, size), size), the same bytes, in about half the time with one more core.

    Pillow's resize (bicubic, bilinear) is a horizontal pass (every row on its own) and then a vertical pass (every column on
    its own), each with weights that depend only on the sizes (Pillow, src/libImaging/Resample.c). So the
    horizontal pass runs on the top and the bottom half of the rows, the vertical pass only on the columns the crop
    keeps, in a left and a right half: one half of each in `helper`, the other in the calling thread. (Pillow
    releases the GIL while it resamples.)
    """
    width, height = image.size
    new_width, new_height = sides(width, height, size)
    left, top = centre_origin(new_width, new_height, size)
    middle = height // 2
    if new_width != width and middle > 0:
        upper = helper.submit(_resampled, image, (0, 0, width, middle), (new_width, middle), resample)
        lower = _resampled(image, (0, middle, width, height), (new_width, height - middle), resample)
        rows = Image.new(image.mode, (new_width, height))
        rows.paste(upper.result(), (0, 0))
        rows.paste(lower, (0, middle))
    else:
        rows = image.resize((new_width, height), resample=resample)
    centre = left + size // 2
    if size // 2 > 0:
        west = helper.submit(_resampled, rows, (left, 0, centre, height), (centre - left, new_height), resample)
        east = _resampled(rows, (centre, 0, left + size, height), (left + size - centre, new_height), resample)
        columns = Image.new(image.mode, (size, new_height))
        columns.paste(west.result(), (0, 0))
        columns.paste(east, (centre - left, 0))
    else:
        columns = _resampled(rows, (left, 0, left + size, height), (size, new_height), resample)
    return columns.crop((0, top, size, top + size))


def normalisation_table(mean: NDArray[np.float32], std: NDArray[np.float32]) -> NDArray[np.float32]:
    """float32 [3, 256]: every byte value of every channel as the reference normalises it.

    Every step stays float32 as in the reference (a float32 array divided by the Python float 255.0 is float32
    under numpy 1's value-based casting and numpy 2's NEP 50 alike); the order matters: x / 255 * (1 / std) -
    mean / std rounds differently on 548 of the default model's 768 entries (by up to 3.6e-7).
    """
    levels = np.arange(UINT8_LEVELS, dtype=np.float32)[None, :].repeat(3, axis=0) / 255.0
    return (levels - mean.astype(np.float32)[:, None]) / std.astype(np.float32)[:, None]


class ImageTransform:
    """Encoded bytes -> float32 [3, size, size], the CLIP transform of the model's profile.

    The profile picks the decoder (decode_rgb, or decode_opencv_bgr for mt-photos-ai), the resize (shorter side
    then centre crop, or straight to size x size as mt-photos-ai onnx/clip.py:29 does) and Pillow's filter; the
    normalisation below is the same float32 arithmetic in both services (mt-photos-ai onnx/clip.py:24-25, 31-32:
    float32 mean and std, x / 255.0, then (x - mean) / std, on whatever channel order the decoder gave).

    Normalisation goes through a per-channel table of the 256 byte values, computed with the reference's own
    float32 operations in its order: x / 255, then (that - mean) / std (immich machine-learning,
    models/transforms.py `to_numpy` and `normalize`; mean and std are float32 arrays, models/clip/visual.py
    `_load`). Each pixel's value depends only on its byte and channel, so the lookup is bit-identical to
    normalising the whole image. The table is built once, here.
    With a `helper` executor the resize of an image up to SPLIT_MAX_PIXELS runs in two threads
    (resize_crop_in_halves: the same bytes).
    """

    def __init__(
        self, size: int, mean: Sequence[float] | NDArray[np.float32], std: Sequence[float] | NDArray[np.float32],
        profile: ClipProfile = IMMICH,
    ) -> None:
        self.size = int(size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.table = normalisation_table(self.mean, self.std)
        self.decode = decode_opencv_bgr if profile.decoder == OPENCV_BGR else decode_rgb
        self.crop = profile.resize in (SHORTEST_CROP, HF_SHORTEST_CROP)
        self.sides = hf_shortest_side_size if profile.resize == HF_SHORTEST_CROP else shortest_side_size
        self.resample = RESAMPLING[profile.interpolation]

    def __call__(self, data: bytes, helper: Executor | None = None) -> NDArray[np.float32]:
        return self.from_image(self.decode(data), helper)

    def from_image(self, image: Image.Image, helper: Executor | None = None) -> NDArray[np.float32]:
        if not self.crop:  # resize `exact`
            square = image.resize((self.size, self.size), resample=self.resample)
        elif helper is None or image.width * image.height > SPLIT_MAX_PIXELS:
            square = crop_centre(resize_shortest(image, self.size, self.resample, self.sides), self.size)
        else:
            square = resize_crop_in_halves(image, self.size, helper, self.resample, self.sides)
        rgb = np.asarray(square)
        return np.stack([self.table[channel][rgb[:, :, channel]] for channel in range(3)])


# ----------------------------------------------------------------------------------------------- text


def clean_text(text: str, canonicalize: bool = False) -> str:
    """Every run of Unicode whitespace (U+3000 included) to one space, stripped; optionally without
    punctuation and lower-cased (models whose config says `tokenizer_kwargs.clean == "canonicalize"`).

    immich machine-learning, models/transforms.py `clean_text`.
    """
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(_PUNCTUATION).lower()
    return text


class TextTokenizer:
    """Strings -> (ids, attention_mask), int32 [batch, context_length], padded and truncated to that length
    with the model's pad token (immich machine-learning, models/clip/textual.py `OpenClipTextualEncoder`)."""

    def __init__(
        self, tokenizer_file: Path, context_length: int, pad_token: str, canonicalize: bool,
        language_prefix: bool = False,
    ) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        pad_id = self.tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"pad token {pad_token!r} is not in {tokenizer_file}")
        self.pad_id = int(pad_id)
        self.context_length = context_length
        self.canonicalize = canonicalize
        self.language_prefix = language_prefix  # NLLB models: the query's FLORES-200 code goes first
        self.tokenizer.enable_padding(length=context_length, pad_token=pad_token, pad_id=self.pad_id)
        self.tokenizer.enable_truncation(max_length=context_length)

    def __call__(
        self, texts: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """`languages` (one per text, may be None) are read by a model with a language prefix only (immich
        textual.py: the prefix goes after cleaning, before tokenising)."""
        if not texts:
            empty = np.zeros((0, self.context_length), dtype=np.int32)
            return empty, empty.copy()
        cleaned = [clean_text(t, self.canonicalize) for t in texts]
        if self.language_prefix and languages is not None:
            cleaned = [with_language(text, language) for text, language in zip(cleaned, languages, strict=True)]
        encodings = self.tokenizer.encode_batch(cleaned)
        ids = np.array([e.ids for e in encodings], dtype=np.int32)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int32)
        return ids, mask


def text_tokenizer(
    profile: ClipProfile, tokenizer_file: Path, context_length: int, pad_token: str, canonicalize: bool,
    language_prefix: bool = False,
) -> TextTokenizer | BertTokenizer:
    """The profile's tokeniser over the model's tokenizer file (tokenizer.json, or a BERT vocab.txt: that one
    has its own cleaning and framing, and takes neither pad token, canonicalisation nor a language)."""
    if profile.tokenizer == BERT_VOCAB:
        return BertTokenizer(tokenizer_file, context_length)
    return TextTokenizer(tokenizer_file, context_length, pad_token, canonicalize, language_prefix)


# ----------------------------------------------------------------------------------------------- numbers


def format_embedding(values: NDArray[np.float32]) -> list[str]:
    """The `/clip/*` result strings: the shortest float32 repr, read back as float64, 16 decimals.

    (The reference serialises with orjson, MT Photos parses that JSON and prints "{:.16f}".) numpy's
    float32-to-str cast is the shortest round-trip repr, like orjson's.
    """
    shortest = np.asarray(values, dtype=np.float32).reshape(-1).astype(str)
    return [f"{float(s):.16f}" for s in shortest]
