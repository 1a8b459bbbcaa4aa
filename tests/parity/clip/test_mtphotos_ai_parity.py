"""The mt-photos-ai CLIP profile against mt-photos-ai's own code, transcribed in mt_photos_triton/reference/mtphotos_ai.py.

- pre-processing: the model input tensor np.array_equal to the reference's (OpenCV colour decode, BGR handed to
  Pillow, 224x224 bicubic, float32 normalisation) on every fixture photo and on generated uploads of every awkward
  kind (grey, palette, RGBA, LA, 16-bit, CMYK, EXIF-rotated 3/6/8, tiny, thin, wide, tall, WebP, TIFF, BMP);
- tokeniser: identical ids on Chinese, English, mixed, emoji, accents, control characters, over-long and blank
  text, and on every Unicode scalar value (in runs of 64 consecutive code points);
- the two parts through the stand-in ONNX files: the service's answer strings equal the reference's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.pipelines.clip import ImageTransform
from mt_photos_triton.pipelines.clip_bert import BertTokenizer
from mt_photos_triton.pipelines.clip_profile import MT_PHOTOS_AI
from mt_photos_triton.reference import mtphotos_ai as reference
from tests.cnclip_support import cnclip_vocab, mtphotos_dir  # noqa: F401 - fixtures
from tests.parity.clip.test_clip_parity import EXIF_ORIENTATION, TEXTS, encode, fixture_images, generated_images, gradient

pytestmark = pytest.mark.parity

RUN = 64  # code points per string in the sweep
MT_TEXTS = [
    *TEXTS,
    "Café Ñandú naïve résumé ÅNGSTRÖM",
    "a\x00b\x1fc\u200bd\ufffde\x7ff",  # NUL, controls, zero-width space, replacement character
    "tab\tnew\nline\rcarriage\x0bvt\x0cff",
    "\x1c\x1d\x1e\x1f\x85",  # whitespace to str.split(), control characters to BERT
    "全角ＡＢＣ１２３，。！",
    "ひらがな カタカナ 한국어",
    "𠀀𪜀𫝀𫠠𬺰 CJK extensions",
    "\ue000\uf8ff private use",
    "U.S.A. e-mail don't #hashtag @user 100% $5",
    "unaffable " * 30,
    "x" * 201,
    "词" * 49 + "a",
]


def mt_images() -> dict[str, bytes]:
    """The immich parity's generated uploads plus the kinds OpenCV treats on its own."""
    images = dict(generated_images())
    for orientation in (3, 8):
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        images[f"exif-{orientation}.jpg"] = encode(gradient(300, 180, 20 + orientation), "JPEG", exif=exif)
    images["grey.jpg"] = encode(gradient(150, 100, 30).convert("L"), "JPEG")
    images["grey-16-bit.tif"] = encode(Image.fromarray((np.arange(60 * 40).reshape(40, 60) * 27).astype(np.uint16)), "TIFF")
    transparent = gradient(90, 70, 31).convert("P", palette=Image.Palette.ADAPTIVE)
    images["palette-transparent.png"] = encode(transparent, "PNG", transparency=0)
    images["rgba.webp"] = encode(gradient(100, 80, 32).convert("RGBA"), "WEBP", lossless=True)
    images["very-wide.png"] = encode(gradient(3000, 40, 33), "PNG")
    images["bgr-check.png"] = encode(Image.new("RGB", (64, 64), (255, 0, 0)), "PNG")
    return images


def decodable(images: dict[str, bytes]) -> dict[str, bytes]:
    """What mt-photos-ai can answer at all (its OpenCV decodes no GIF)."""
    return {name: data for name, data in images.items() if reference.decode(data) is not None}


def test_model_input_tensors_are_array_equal_to_mt_photos_ai(fixtures: Path) -> None:
    images = {**mt_images(), **fixture_images(fixtures)}
    usable = decodable(images)
    ours = ImageTransform(reference.IMG_SIZE, reference.MEAN, reference.STD, MT_PHOTOS_AI)
    for name, data in usable.items():
        want = reference.image_input(data)
        got = ours(data)[None]
        assert want.dtype == got.dtype == np.float32 and want.shape == got.shape == (1, 3, 224, 224), name
        assert np.array_equal(got, want), f"{name}: {int((got != want).sum())} values differ"
    print(f"\nmt-photos-ai model input tensors array_equal on {len(usable)} images ({len(fixture_images(fixtures))} "
          f"fixtures + {len(usable) - len(fixture_images(fixtures))} generated; not decodable by OpenCV, as there: "
          f"{sorted(set(images) - set(usable))})")


def test_the_channels_reach_the_model_swapped_and_exif_is_applied() -> None:
    """What makes this profile differ from immich's: a red upload is fed as blue, and the photo is turned."""
    ours = ImageTransform(reference.IMG_SIZE, reference.MEAN, reference.STD, MT_PHOTOS_AI)
    red = ours(mt_images()["bgr-check.png"])
    assert red[0].max() < 0 < red[2].min()  # channel 0 holds the blue byte (0), channel 2 the red one (255)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    half = Image.new("RGB", (200, 100), (0, 0, 0))
    half.paste((255, 255, 255), (0, 0, 100, 100))  # white left half; rotated 90 CW it is the top half
    turned = ours(encode(half, "PNG", exif=exif))
    assert turned[0, :100].mean() > 1 > -1 > turned[0, 124:].mean()


def test_token_ids_are_mt_photos_ai_s(cnclip_vocab: Path) -> None:
    ours = BertTokenizer(cnclip_vocab, reference.CONTEXT_LENGTH)
    upstream = reference.FullTokenizer(cnclip_vocab)
    got, _ = ours(MT_TEXTS)
    want = reference.tokenize_numpy(upstream, MT_TEXTS)
    for text, row, expected in zip(MT_TEXTS, got, want):
        assert row.tolist() == expected.tolist(), repr(text)
    assert want[MT_TEXTS.index("x" * 201), :3].tolist() == [upstream.vocab["[CLS]"], upstream.vocab["[UNK]"],
                                                            upstream.vocab["[SEP]"]]
    assert (want[:, -1] != 0).sum() >= 3  # over-long texts fill all 52


def test_token_ids_agree_on_every_unicode_scalar_value(cnclip_vocab: Path) -> None:
    ours = BertTokenizer(cnclip_vocab, reference.CONTEXT_LENGTH)
    upstream = reference.FullTokenizer(cnclip_vocab)
    differing = []
    for start in range(0, 0x110000, RUN):
        text = "".join(chr(c) for c in range(start, start + RUN) if not 0xD800 <= c <= 0xDFFF)
        ids = ours.ids(text)
        if ids != [upstream.vocab["[CLS]"], *upstream.convert_tokens_to_ids(upstream.tokenize(text))[:50],
                   upstream.vocab["[SEP]"]]:
            differing.append(hex(start))
    assert differing == []


def test_answers_through_the_stand_in_files_are_the_reference_s(mtphotos_dir: Path) -> None:
    """The profile's parts put together in process (what Triton runs) give the reference service's strings."""
    import onnxruntime

    from adapter.wire import clip_strings

    service = reference.Service(mtphotos_dir)
    visual = onnxruntime.InferenceSession(str(mtphotos_dir / "vit-b-16.img.fp32.onnx"), providers=["CPUExecutionProvider"])
    textual = onnxruntime.InferenceSession(str(mtphotos_dir / "vit-b-16.txt.fp32.onnx"), providers=["CPUExecutionProvider"])
    transform = ImageTransform(224, reference.MEAN, reference.STD, MT_PHOTOS_AI)
    tokenizer = BertTokenizer(mtphotos_dir / "vocab.txt", 52)
    for name, data in list(decodable(mt_images()).items())[:6]:
        vector = visual.run(None, {"image": transform(data)[None]})[0][0]
        assert clip_strings(vector, MT_PHOTOS_AI.number_format) == service.clip_img(data)["result"], name
    for text in MT_TEXTS[:8]:
        vector = textual.run(None, {"text": tokenizer([text])[0].astype(np.int64)})[0][0]
        assert clip_strings(vector, MT_PHOTOS_AI.number_format) == service.clip_txt(text)["result"], repr(text)


OPENCV_ENV = "MTPHOTOS_AI_OPENCV_PATH"  # a `pip install --target DIR --no-deps opencv-python-headless==4.6.0.66`
DECODE_SCRIPT = """
import pickle, sys
import cv2, numpy as np
images = pickle.load(sys.stdin.buffer)
pickle.dump((cv2.__version__, {k: cv2.imdecode(np.frombuffer(v, np.uint8), cv2.IMREAD_COLOR) for k, v in images.items()}),
            sys.stdout.buffer)
"""


def test_our_opencv_decodes_as_mt_photos_ai_s_pinned_one(fixtures: Path) -> None:
    """Opt-in: mt-photos-ai pins opencv-python-headless 4.6.0.66 (onnx/requirements.txt); we run 4.8-4.11."""
    import os
    import pickle
    import subprocess
    import sys

    target = os.environ.get(OPENCV_ENV)
    if not target:
        pytest.skip(f"set {OPENCV_ENV} to a `pip install --target DIR --no-deps opencv-python-headless==4.6.0.66`")
    images = {**mt_images(), **fixture_images(fixtures)}
    completed = subprocess.run([sys.executable, "-c", DECODE_SCRIPT], input=pickle.dumps(images), capture_output=True,
                               env={**os.environ, "PYTHONPATH": target}, check=True)
    version, theirs = pickle.loads(completed.stdout)
    assert version.startswith("4.6.")
    for name, data in images.items():
        ours = reference.decode(data)
        assert (ours is None) == (theirs[name] is None), name
        assert ours is None or np.array_equal(ours, theirs[name]), name
    print(f"\nOpenCV {version} and ours decode {len(images)} images identically")
