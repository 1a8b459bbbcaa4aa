"""Our CLIP pipeline against the reference's, written out in tests/parity/clip/reference.py.

- pre-processing: max abs diff <= 1e-6 on the fixture photos and generated images of every awkward kind, with
  the resize in one thread and split over two (what a lone photo gets);
- tokeniser: identical ids (and M-CLIP masks) on Chinese, English, mixed, emoji, over-long and blank text;
- number format: identical strings on 10,000 random float32 values (the reference: orjson, then "{:.16f}").
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.reference.clip_standins import CLIP_MEAN, CLIP_STD, build_tokenizer
from mt_photos_triton.pipelines.clip import ImageTransform, TextTokenizer, format_embedding
from tests.parity.clip.reference import ReferenceTokenizer, reference_image_input, reference_result_strings

pytestmark = pytest.mark.parity

MAX_PIXEL_DIFF = 1e-6
SIZES = (224, 240)  # the default model's, and XLM-Roberta-Large-Vit-B-16Plus's
EXIF_ORIENTATION = 0x0112
TEXTS = [
    "红色",
    "一只在海边的猫",
    "a photo of a red cat",
    "Sunset over the MOUNTAIN, 2024!",
    "红色 car on the street",
    "猫 and 狗 在 海边",
    "🐱🐶🌅 ❤️ 😀",
    "smile 😀 微笑",
    "a " * 200,
    "海边日落" * 60,
    "",
    "   ",
    "\u3000\u3000",
    " \t\n\u3000 ",
    "  leading and\u3000\u3000trailing\n\nspaces\t ",
    "unknown ✈ symbols ⌘",
]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width, 1), y * 255 // max(height, 1), (x * y) & 255], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(-25, 25, base.shape), 0, 255).astype(np.uint8))


def generated_images() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 CW to display": the reference ignores it
    sixteen = (np.arange(70 * 50, dtype=np.uint16).reshape(50, 70) * 18).astype(np.uint16)
    return {
        "portrait.jpg": encode(gradient(300, 500, 1), "JPEG", quality=92),
        "landscape.jpg": encode(gradient(1280, 960, 2), "JPEG", quality=85),
        "square.png": encode(gradient(224, 224, 3), "PNG"),
        "odd.webp": encode(gradient(333, 257, 4), "WEBP", quality=90),
        "tiny.png": encode(gradient(3, 5, 5), "PNG"),
        "one-pixel.bmp": encode(gradient(1, 1, 6), "BMP"),
        "thin.png": encode(gradient(400, 7, 7), "PNG"),
        "grayscale.png": encode(gradient(120, 90, 8).convert("L"), "PNG"),
        "palette.png": encode(gradient(120, 90, 9).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette.gif": encode(gradient(64, 48, 10).convert("P"), "GIF"),
        "rgba.png": encode(gradient(150, 100, 11).convert("RGBA"), "PNG"),
        "la.png": encode(gradient(80, 60, 12).convert("LA"), "PNG"),
        "16-bit.png": encode(Image.frombytes("I;16", (70, 50), sixteen.tobytes()), "PNG"),
        "cmyk.jpg": encode(gradient(200, 150, 13).convert("CMYK"), "JPEG"),
        "exif-rotated.jpg": encode(gradient(320, 200, 14), "JPEG", exif=exif),
        "tiff.tif": encode(gradient(90, 60, 15), "TIFF"),
    }


def fixture_images(fixtures: Path) -> dict[str, bytes]:
    images = {}
    for folder in ("faces", "ocr"):
        for path in sorted((fixtures / "images" / folder).glob("*")):
            if path.suffix.lower() in {".jpg", ".jpeg", ".png"}:
                images[f"{folder}/{path.name}"] = path.read_bytes()
    return images


def test_preprocessing_equals_the_reference_transform(fixtures: Path) -> None:
    images = {**generated_images(), **fixture_images(fixtures)}
    worst = {"one thread": 0.0, "two threads": 0.0}
    with ThreadPoolExecutor(max_workers=1) as helper:
        for size in SIZES:
            ours = ImageTransform(size, CLIP_MEAN, CLIP_STD)
            for name, data in images.items():
                want = reference_image_input(data, size, list(CLIP_MEAN), list(CLIP_STD))[0]
                for how, got in (("one thread", ours(data)), ("two threads", ours(data, helper))):
                    assert got.shape == want.shape == (3, size, size), name
                    assert got.dtype == np.float32
                    worst[how] = max(worst[how], float(np.abs(got - want).max()))
    print(f"\nCLIP pre-processing vs the reference transform on {len(images)} images x {len(SIZES)} sizes: "
          f"max abs diff = {worst['one thread']:.3g} (resize split over two threads: {worst['two threads']:.3g})")
    assert max(worst.values()) <= MAX_PIXEL_DIFF


def test_exif_orientation_is_not_applied() -> None:
    data = generated_images()["exif-rotated.jpg"]
    got = ImageTransform(224, CLIP_MEAN, CLIP_STD)(data)
    upright = reference_image_input(data, 224, list(CLIP_MEAN), list(CLIP_STD))[0]
    transposed = Image.open(io.BytesIO(data))
    from PIL import ImageOps

    rotated = ImageTransform(224, CLIP_MEAN, CLIP_STD).from_image(ImageOps.exif_transpose(transposed).convert("RGB"))
    assert np.abs(got - upright).max() <= MAX_PIXEL_DIFF
    assert np.abs(got - rotated).max() > 0.1  # a transform that applied EXIF would fail the parity above


@pytest.mark.parametrize("mclip", [False, True], ids=["text", "mclip"])
def test_tokeniser_gives_the_reference_ids(tmp_path: Path, mclip: bool) -> None:
    model = tmp_path / "model"
    (model / "textual").mkdir(parents=True)
    build_tokenizer(model / "textual")
    (model / "config.json").write_text('{"text_cfg": {"context_length": 77}}')
    reference = ReferenceTokenizer(model, mclip=mclip)
    ours = TextTokenizer(model / "textual" / "tokenizer.json", 77, "<pad>", canonicalize=False)
    ids, mask = ours(TEXTS)
    for index, text in enumerate(TEXTS):
        want = reference(text)
        np.testing.assert_array_equal(ids[index : index + 1], want["input_ids" if mclip else "text"], err_msg=text)
        if mclip:
            np.testing.assert_array_equal(mask[index : index + 1], want["attention_mask"], err_msg=text)
    # the cases mean what they say: special tokens, padding with <pad>=1, truncation to 77
    assert ids.shape == (len(TEXTS), 77) and ids.dtype == np.int32
    assert ids[0, 0] == 0 and 2 in ids[0] and ids[0, -1] == 1
    assert (ids[8] != 1).all() and ids[8, -1] == 2  # over-long: truncated, ends with </s>
    assert list(ids[11, :3]) == [0, 2, 1]  # whitespace only: <s></s> then padding
    assert (ids[TEXTS.index(" \t\n\u3000 ")] == ids[TEXTS.index("")]).all()
    print(f"\ntokeniser ({'M-CLIP' if mclip else 'text'}): {len(TEXTS)} texts, ids identical to the reference")


def test_number_format_equals_the_reference_on_random_float32() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(0.0, 0.05, 7000),
        rng.uniform(-1.0, 1.0, 2000),
        rng.normal(0.0, 1e-4, 900),
        10.0 ** rng.uniform(-9, 2, 100) * rng.choice([-1, 1], 100),
    ]).astype(np.float32)
    assert values.size == 10_000
    ours = format_embedding(values)
    want = reference_result_strings(values)
    mismatches = sum(a != b for a, b in zip(ours, want))
    print(f"\nnumber format: {values.size} random float32 values, {mismatches} strings differ from the reference")
    assert mismatches == 0 and len(ours) == len(want)
    assert format_embedding(np.array([1 / 3], np.float32)) == ["0.3333333400000000"]
    assert all("e" not in s for s in ours)
