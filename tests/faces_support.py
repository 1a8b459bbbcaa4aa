"""Face test material: packs built from the fixture detectors (or the SCRFD-shaped stand-in these tests build)
plus a stand-in recogniser, and test images (the face fixtures, insightface's t1.jpg, generated cases, and
images whose faces the stand-in sees)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mt_photos_triton.reference.arcface_standin import build_tiny

DETECTORS = ("det_500m", "det_2.5g", "scrfd_500m_bnkps_batched")
FIXTURE_FACES = ("astronaut.png", "obama.jpg", "obama2.jpg", "obama3.jpg", "obama_small.jpg", "biden.jpg", "biden2.jpg")
EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # EXIF orientation 6: the stored pixels must be turned 90° clockwise to be upright


STANDIN_STRIDES = (8, 16, 32)
STANDIN_ANCHORS = 2
# the stand-in "sees a face" in 8x8 cells brighter than this (on SCRFD's input scale, (pixel - 127.5) / 128)
STANDIN_BRIGHTNESS = 0.8
STANDIN_GAIN = 20.0


def detector_path(fixtures: Path, name: str) -> Path:
    path = fixtures / "models" / "scrfd" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"licensed SCRFD detector {name}.onnx not found in {path.parent} (see the fixtures' MANIFEST)")
    return path


def build_standin_detector(path: Path) -> Path:
    """An SCRFD-shaped ONNX detector (input `input.1` [1,3,?,?]; per stride 8/16/32 and 2 anchors a score, box
    and keypoint map, each Transpose → Reshape [-1, C] as insightface's files end), with set weights: a stride-8
    cell scores high where its 8x8 pixels are bright, boxes span 2 strides each way, keypoints sit in a
    face-like pattern; strides 16 and 32 never score. Export, the pipeline and insightface treat it as they
    treat det_2.5g, so the faces plumbing runs end to end without the licensed files (faces found mean nothing)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(array, name))
        return name

    def conv(name: str, x: str, weight: np.ndarray, bias: np.ndarray, stride: int) -> str:
        nodes.append(helper.make_node(
            "Conv", [x, constant(f"{name}_w", weight.astype(np.float32)), constant(f"{name}_b", bias.astype(np.float32))],
            [name], kernel_shape=list(weight.shape[2:]), strides=[stride, stride],
        ))
        return name

    # one feature per cell: the mean of its pixels over the three channels, then pooled 2x2 per stride
    feature = conv("feat_8", "input.1", np.full((1, 3, 8, 8), 1 / 192), np.zeros(1), 8)
    features = {8: feature}
    for stride in STANDIN_STRIDES[1:]:
        features[stride] = conv(f"feat_{stride}", features[stride // 2], np.full((1, 1, 2, 2), 0.25), np.zeros(1), 2)
    keypoints = np.array([-0.6, -0.5, 0.6, -0.5, 0.0, 0.1, -0.5, 0.7, 0.5, 0.7], np.float32)
    outputs = {"score": [], "bbox": [], "kps": []}
    for stride in STANDIN_STRIDES:
        live = stride == 8
        heads = {
            "score": (np.full(1, STANDIN_GAIN if live else 0.0), np.full(1, -STANDIN_GAIN * STANDIN_BRIGHTNESS if live else -30.0)),
            "bbox": (np.zeros(4), np.full(4, 2.0)),
            "kps": (np.zeros(10), keypoints * 2.0),
        }
        for kind, (gain, bias) in heads.items():
            width = len(bias)
            weight = np.tile(gain, STANDIN_ANCHORS).reshape(width * STANDIN_ANCHORS, 1, 1, 1)
            head = conv(f"{kind}_{stride}_conv", features[stride], weight, np.tile(bias, STANDIN_ANCHORS), 1)
            nodes.append(helper.make_node("Transpose", [head], [f"{kind}_{stride}_nhwc"], perm=[0, 2, 3, 1]))
            shape = constant(f"{kind}_{stride}_shape", np.array([-1, width], np.int64))
            flat = f"{kind}_{stride}" if kind != "score" else f"{kind}_{stride}_logit"
            nodes.append(helper.make_node("Reshape", [f"{kind}_{stride}_nhwc", shape], [flat]))
            if kind == "score":
                nodes.append(helper.make_node("Sigmoid", [flat], [f"{kind}_{stride}"]))
            outputs[kind].append(helper.make_tensor_value_info(f"{kind}_{stride}", TensorProto.FLOAT, [None, width]))
    graph = helper.make_graph(
        nodes, "scrfd_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def build_standin_batched_detector(path: Path, side: int = 640) -> Path:
    """The stand-in laid out as scrfd_500m_bnkps_batched.onnx is: a fixed side x side input and a leading batch
    axis of 1 on each output (Reshape [1, -1, C] where insightface's files reshape to [-1, C]); names unchanged."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(build_standin_detector(path.with_name(f"{path.stem}_plain.onnx")))
    initializers = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape":
            target = initializers[node.input[1]]
            target.CopyFrom(numpy_helper.from_array(np.array([1, -1, numpy_helper.to_array(target)[-1]], np.int64), target.name))
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 3, side, side)):
        dim.Clear()
        dim.dim_value = value
    outputs = [
        helper.make_tensor_value_info(o.name, TensorProto.FLOAT, [1, None, o.type.tensor_type.shape.dim[-1].dim_value])
        for o in model.graph.output
    ]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def standin_face_image(size: int = 640) -> bytes:
    """A PNG in which the stand-in detector sees exactly one face: a bright 16 px square on black."""
    image = Image.new("RGB", (size, size), "black")
    middle = size // 2 - 8
    image.paste((255, 255, 255), (middle, middle, middle + 16, middle + 16))
    return encode(image, "PNG")


def standin_spots_image(spots: list[tuple[int, int]], size: tuple[int, int] = (640, 640), shade: int = 255) -> bytes:
    """A PNG (black, `size` = width x height, no side over 640 so the letterbox keeps the scale) in which the
    stand-in sees one face per spot: an 8 px square of grey `shade` whose top-left corner is a spot on the 8 px
    grid, so that exactly one stride-8 cell covers it (one best anchor: the box does not move between encodings
    or orientations). White scores ~0.98; shade 236 scores ~0.72, between FACE_MIN_SCORE 0.65 and 0.8."""
    image = Image.new("RGB", size, "black")
    for x, y in spots:
        assert x % 8 == 0 and y % 8 == 0, "a spot off the 8 px grid splits over cells"
        image.paste((shade, shade, shade), (x, y, x + 8, y + 8))
    return encode(image, "PNG")


def standin_score(shade: int) -> float:
    """The stand-in's score for a cell of grey `shade` (its sigmoid of gain x (input - threshold))."""
    value = (shade - 127.5) / 128
    return float(1 / (1 + np.exp(-STANDIN_GAIN * (value - STANDIN_BRIGHTNESS))))


def blank_image() -> bytes:
    """A mid-grey PNG with no face for any detector."""
    return encode(Image.new("RGB", (640, 480), (128, 128, 128)), "PNG")


def exif6(image: Image.Image) -> bytes:
    """`image` stored sideways in a JPEG whose EXIF orientation 6 turns it upright again."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


def real_detector_present(fixtures: Path, name: str) -> bool:
    """Whether the licensed SCRFD file `name` is in the fixtures (else tests take the stand-in: plumbing only)."""
    return (fixtures / "models" / "scrfd" / f"{name}.onnx").is_file()


def face_detector(fixtures: Path, name: str, work: Path) -> Path:
    """The fixture detector where the licensed files are present, else the stand-in built into `work`."""
    if real_detector_present(fixtures, name):
        return fixtures / "models" / "scrfd" / f"{name}.onnx"
    return build_standin_detector(work / "scrfd_standin.onnx")


def build_pack(root: Path, detector: Path, **recognizer_options: bool) -> Path:
    """A face pack folder (detection/model.onnx, recognition/model.onnx) as immich-app lays it out."""
    (root / "detection").mkdir(parents=True, exist_ok=True)
    shutil.copy(detector, root / "detection" / "model.onnx")
    build_tiny(root / "recognition" / "model.onnx", **recognizer_options)
    return root


def t1_bytes() -> bytes:
    """insightface's own group photo (6 faces), from the installed package data."""
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not path.is_file():
        pytest.skip("insightface's t1.jpg is not installed")
    return path.read_bytes()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def generated_cases(fixtures: Path) -> dict[str, bytes]:
    """Rotated, tiny, huge, grayscale, RGBA, EXIF orientation 6 and no-face images."""
    faces = fixtures / "images" / "faces"
    obama = Image.open(faces / "obama.jpg").convert("RGB")
    group = Image.open(io.BytesIO(t1_bytes())).convert("RGB")
    astronaut = Image.open(faces / "astronaut.png").convert("RGB")
    alpha = Image.linear_gradient("L").resize(astronaut.size)
    return {
        "rotated_t1.png": encode(group.transpose(Image.Transpose.ROTATE_90), "PNG"),
        "tiny_obama.jpg": encode(obama.resize((60, 45)), "JPEG", quality=95),
        "huge_t1.jpg": encode(group.resize((group.width * 4, group.height * 4), Image.Resampling.BICUBIC), "JPEG"),
        "grayscale_obama.png": encode(obama.convert("L"), "PNG"),
        "rgba_astronaut.png": encode(Image.merge("RGBA", (*astronaut.split(), alpha)), "PNG"),
        # stored sideways; upright only once the EXIF orientation is applied
        "exif6_obama.jpg": exif6(obama),
        "blank.png": blank_image(),
    }


def all_cases(fixtures: Path) -> dict[str, bytes]:
    faces = fixtures / "images" / "faces"
    cases = {name: (faces / name).read_bytes() for name in FIXTURE_FACES}
    cases["t1.jpg"] = t1_bytes()
    cases.update(generated_cases(fixtures))
    return cases


def reference_decode(data: bytes) -> np.ndarray:
    """How the reference service reads an upload: cv2.imdecode (EXIF applied, BGR)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image
