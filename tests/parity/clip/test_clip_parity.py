"""Our CLIP pipeline against the reference's, transcribed from immich in tests/parity/clip/reference.py.

- pre-processing: the model input tensor np.array_equal to the reference's on every fixture photo and on
  generated uploads of every awkward kind (tall, wide, tiny, grey, palette, RGBA, 16-bit, CMYK, EXIF-rotated),
  with the resize in one thread and split over two (what a lone photo gets), at two model sizes;
- the normalisation table: each of its 768 entries equal to the reference's normalize of that byte, under
  numpy 1's and numpy 2's promotion rules; the old table (x / 255 * (1 / std) - mean / std) is caught;
- tokeniser: identical ids (and M-CLIP masks) on Chinese, English, mixed, emoji, over-long and blank text;
- number format: identical strings on 10,000 random float32 values (the reference: orjson, then "{:.16f}").
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from mt_photos_triton.pipelines.clip import UINT8_LEVELS, ImageTransform, TextTokenizer, format_embedding
from mt_photos_triton.reference.clip_standins import CLIP_MEAN, CLIP_STD, build_tokenizer
from tests.parity.clip import reference
from tests.parity.clip.reference import ReferenceTokenizer, reference_image_input, reference_result_strings

pytestmark = pytest.mark.parity

SIZES = (224, 240)  # the default model's, and XLM-Roberta-Large-Vit-B-16Plus's
EXIF_ORIENTATION = 0x0112
OLD_TABLE_DIFFERING_ENTRIES = 548  # of 768, for the default mean/std (issue 13)
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
    """Uploads as a user's files would arrive: encoded bytes of each awkward kind."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "rotate 90 CW to display": the reference ignores it
    sixteen = (np.arange(70 * 50, dtype=np.uint16).reshape(50, 70) * 18).astype(np.uint16)
    translucent = gradient(150, 100, 11).convert("RGBA")
    translucent.putalpha(Image.linear_gradient("L").resize(translucent.size))  # alpha 0..255: dropped, not blended
    return {
        "portrait.jpg": encode(gradient(300, 500, 1), "JPEG", quality=92),
        "landscape.jpg": encode(gradient(1280, 960, 2), "JPEG", quality=85),
        "tall.png": encode(gradient(180, 1400, 16), "PNG"),
        "wide.jpg": encode(gradient(1600, 120, 17), "JPEG", quality=90),
        "square.png": encode(gradient(224, 224, 3), "PNG"),
        "odd.webp": encode(gradient(333, 257, 4), "WEBP", quality=90),
        "tiny-3x5.png": encode(gradient(3, 5, 5), "PNG"),
        "tiny-2x3.png": encode(gradient(2, 3, 18), "PNG"),
        "one-pixel.bmp": encode(gradient(1, 1, 6), "BMP"),
        "thin.png": encode(gradient(400, 7, 7), "PNG"),
        "grey-L.png": encode(gradient(120, 90, 8).convert("L"), "PNG"),
        "palette-P.png": encode(gradient(120, 90, 9).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette-P.gif": encode(gradient(64, 48, 10).convert("P"), "GIF"),
        "rgba.png": encode(translucent, "PNG"),
        "la.png": encode(gradient(80, 60, 12).convert("LA"), "PNG"),
        "16-bit-I;16.png": encode(Image.frombytes("I;16", (70, 50), sixteen.tobytes()), "PNG"),
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


def all_images(fixtures: Path) -> dict[str, bytes]:
    return {**generated_images(), **fixture_images(fixtures)}


def test_generated_images_are_the_kinds_they_claim() -> None:
    modes = {name: Image.open(io.BytesIO(data)).mode for name, data in generated_images().items()}
    assert modes["grey-L.png"] == "L" and modes["palette-P.png"] == modes["palette-P.gif"] == "P"
    assert modes["rgba.png"] == "RGBA" and modes["16-bit-I;16.png"].startswith("I;16") and modes["cmyk.jpg"] == "CMYK"
    assert Image.open(io.BytesIO(generated_images()["exif-rotated.jpg"])).getexif()[EXIF_ORIENTATION] == 6
    assert Image.open(io.BytesIO(generated_images()["tiny-2x3.png"])).size == (2, 3)


def test_model_input_tensors_are_array_equal_to_the_reference(fixtures: Path) -> None:
    images = all_images(fixtures)
    compared = 0
    with ThreadPoolExecutor(max_workers=1) as helper:
        for size in SIZES:
            ours = ImageTransform(size, CLIP_MEAN, CLIP_STD)
            for name, data in images.items():
                want = reference_image_input(data, size, list(CLIP_MEAN), list(CLIP_STD))
                assert want.dtype == np.float32 and want.shape == (1, 3, size, size)
                for how, got in (("one thread", ours(data)[None]), ("two threads", ours(data, helper)[None])):
                    assert got.dtype == np.float32, name
                    assert np.array_equal(got, want), f"{name} at {size} ({how}): {int((got != want).sum())} values differ"
                    compared += 1
    print(f"\nCLIP model input tensors array_equal to the immich-transcribed reference on {len(images)} images "
          f"({len(fixture_images(fixtures))} fixtures + {len(generated_images())} generated) x {len(SIZES)} sizes "
          f"x 2 resize paths = {compared} tensors")


def test_the_table_is_the_reference_normalize_of_every_byte_under_numpy_1_and_2() -> None:
    levels = Image.fromarray(np.arange(UINT8_LEVELS, dtype=np.uint8)[None, :, None].repeat(3, axis=2))
    mean, std = reference.channel_arrays(list(CLIP_MEAN), list(CLIP_STD))
    wants = {}
    for state in ("legacy", "weak"):
        with reference.promotion(state):
            wants[state] = reference.normalize(reference.to_array(levels), mean, std)[0].T  # [3, 256]
            assert wants[state].dtype == np.float32
    table = ImageTransform(224, CLIP_MEAN, CLIP_STD).table
    assert np.array_equal(wants["legacy"], wants["weak"])
    assert table.dtype == np.float32 and np.array_equal(table, wants["legacy"])
    print(f"\nCLIP normalisation table: {table.size} entries array_equal to the reference's normalize "
          "(numpy 1 value-based and numpy 2 NEP 50 promotion alike)")


def old_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The table as it was built before issue 13: x / 255, then * (1 / std), then - mean / std."""
    mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    levels = np.arange(UINT8_LEVELS, dtype=np.float32)[None, :].repeat(3, axis=0) / 255.0
    levels *= (1.0 / std32)[:, None]
    levels -= (mean32 / std32)[:, None]
    return levels


def test_the_parity_check_catches_the_old_table(fixtures: Path) -> None:
    """The array_equal check above fails for a transform built with the old formula."""
    images = all_images(fixtures)
    transform = ImageTransform(224, CLIP_MEAN, CLIP_STD)
    transform.table = old_table(CLIP_MEAN, CLIP_STD)
    entries = int((transform.table != ImageTransform(224, CLIP_MEAN, CLIP_STD).table).sum())
    caught, worst = [], 0.0
    for name, data in images.items():
        got = transform(data)[None]
        want = reference_image_input(data, 224, list(CLIP_MEAN), list(CLIP_STD))
        if not np.array_equal(got, want):
            caught.append(name)
            worst = max(worst, float(np.abs(got - want).max()))
    print(f"\nold table (x/255*(1/std) - mean/std): {entries} of 768 entries differ; the array_equal parity check "
          f"detects it on {len(caught)} of {len(images)} images (max |diff| {worst:.3g})")
    assert entries == OLD_TABLE_DIFFERING_ENTRIES
    assert caught == list(images)


def test_exif_orientation_is_not_applied() -> None:
    data = generated_images()["exif-rotated.jpg"]
    transform = ImageTransform(224, CLIP_MEAN, CLIP_STD)
    got = transform(data)[None]
    stored = reference_image_input(data, 224, list(CLIP_MEAN), list(CLIP_STD))
    upright = transform.from_image(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[None]
    assert np.array_equal(got, stored)
    assert np.abs(got - upright).max() > 0.1  # a transform that applied EXIF would fail the parity above


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
