"""Images with text for the OCR bench and parity tests, rendered with Pillow (and composed from the OCR
fixture images when a fixture folder is given, for Chinese text: no CJK font is assumed on the machine)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
)
EXIF_ORIENTATION = 0x0112
ENGLISH_LINES = (
    "MT Photos smart search 2026",
    "Open 9:00-21:00 daily",
    "Total 128.50 EUR paid by card",
    "Platform 3 to Central Station",
    "Fresh coffee, tea and cake",
)
BENCH_SIZE = (1280, 960)


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default(size)


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def text_page(lines: tuple[str, ...], size: int, width: int, ink: str = "black", paper: str = "white") -> Image.Image:
    line_height = int(size * 1.6)
    image = Image.new("RGB", (width, line_height * len(lines) + size), paper)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((size // 2, size // 2 + row * line_height), line, fill=ink, font=font(size))
    return image


def photo_background(size: tuple[int, int], seed: int = 7) -> Image.Image:
    """A smooth colour gradient with sensor-like noise: something photo-like to put text on."""
    rng = np.random.default_rng(seed)
    w, h = size
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = 150 + 60 * x * np.array([1.0, 0.6, 0.2]) + 40 * y * np.array([0.2, 0.5, 1.0])
    noisy = base + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def bench_photo(fixtures: Path | None = None) -> bytes:
    """A 1280x960 JPEG 'photo' with signs of text at several sizes (plus Chinese from the fixtures if given)."""
    photo = photo_background(BENCH_SIZE)
    draw = ImageDraw.Draw(photo)
    y = 40
    for index, line in enumerate(ENGLISH_LINES * 2):
        size = (22, 30, 40, 18, 26)[index % 5]
        draw.text((60 + (index % 3) * 40, y), line, fill=(20, 20, 30), font=font(size))
        y += int(size * 1.9)
    if fixtures is not None:
        folder = fixtures / "images" / "ocr"
        for name, position, scale in (("ch_en_num.jpg", (820, 420), 1.0), ("text_rec.jpg", (700, 60), 0.8)):
            if (folder / name).is_file():
                with Image.open(folder / name) as sign:
                    sign = sign.convert("RGB")
                    photo.paste(sign.resize((int(sign.width * scale), int(sign.height * scale))), position)
    return encode(photo, "JPEG", quality=90)


def parity_images(fixtures: Path | None) -> Iterator[tuple[str, bytes]]:
    """Generated cases: sizes, rotations, aspect ratios, EXIF orientation 6, RGBA, grayscale."""
    for size in (14, 24, 48):
        yield f"english-{size}px", encode(text_page(ENGLISH_LINES, size, size * 20))
    page = text_page(ENGLISH_LINES[:3], 28, 640)
    for angle in (4, 12):
        yield f"english-rotated-{angle}", encode(page.rotate(angle, expand=True, fillcolor="white"))
    yield "wide-banner", encode(text_page((" - ".join(ENGLISH_LINES),), 30, 2400))
    yield "tall-narrow", encode(text_page(tuple(w for line in ENGLISH_LINES[:2] for w in line.split()), 26, 220))
    yield "white-on-dark", encode(text_page(ENGLISH_LINES, 24, 520, ink="white", paper="#203040"))
    yield "bench-photo", bench_photo(fixtures)
    if fixtures is None:
        return
    folder = fixtures / "images" / "ocr"
    with Image.open(folder / "ch_en_num.jpg") as opened:
        chinese = opened.convert("RGB")
    for scale in (0.6, 1.7):
        yield f"chinese-scale-{scale}", encode(chinese.resize((int(chinese.width * scale), int(chinese.height * scale))))
    yield "chinese-vertical", encode(Image.open(folder / "text_rec.jpg").convert("RGB").rotate(90, expand=True))
    yield "chinese-wide-canvas", encode(paste_on_canvas(folder, (1500, 260)))
    # EXIF orientation 6: stored rotated 90 degrees clockwise, to be turned upright by the viewer (and by us)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    yield "exif-orientation-6", encode(chinese.rotate(90, expand=True), "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(folder / "en.jpg") as opened:
        english = opened.convert("RGB")
    rgba = english.convert("RGBA")
    alpha = np.full((english.height, english.width), 255, dtype=np.uint8)
    alpha[:, -60:] = 0  # a transparent strip
    rgba.putalpha(Image.fromarray(alpha))
    yield "rgba-png", encode(rgba)
    with Image.open(folder / "japan.jpg") as opened:
        yield "grayscale-jpeg", encode(opened.convert("L"), "JPEG", quality=92)


def paste_on_canvas(folder: Path, size: tuple[int, int]) -> Image.Image:
    canvas = Image.new("RGB", size, "white")
    x = 10
    for name in ("test_without_det.jpg", "text_rec.jpg"):
        with Image.open(folder / name) as piece:
            canvas.paste(piece.convert("RGB"), (x, 40))
            x += piece.width + 60
    return canvas
