"""Bring your own CLIP: a Hugging Face transformers checkpoint -> the immich layout export/clip.py serves.

`export clip --from DIR` (or `--model hf:<org>/<name>`) where DIR holds a transformers checkpoint: `config.json`
with a `model_type` optimum exports as a two-tower image/text model (TWO_TOWERS), its weights, its image-processor
config (`preprocessor_config.json`, or `processor_config.json` as newer transformers save it) and its tokenizer.
optimum exports the whole model once (one graph: both towers, each with its own dynamic batch axis); the two
towers are cut out of it (pixel_values -> image_embeds, token ids -> text_embeds), which the model's forward
already L2-normalises (transformers modeling_clip.py `CLIPModel.forward`, and likewise chinese_clip, siglip,
metaclip_2); a tower that does not is given a normalisation. optimum's own per-tower configs (`clip_vision_model`,
`clip-text`) export the towers' hidden states without the projection, so they are not what serving needs.

The result is written in the immich layout (`config.json`, `visual/{model.onnx,preprocess_cfg.json}`,
`textual/{model.onnx,tokenizer.json,tokenizer_config.json}`), with the pre-processing the checkpoint's image
processor does (ImageSettings) and the fast tokenizer's `tokenizer.json`; export/clip.py then writes, checks and
records it as any immich model. torch, transformers and optimum come from the `convert` extra.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from export.common import ExportError
from export.onnx_graph import graph_inputs, load, save, session
from mt_photos_triton.pipelines.clip_profile import EXACT, HF_SHORTEST_CROP, IMMICH, ClipProfile

log = logging.getLogger(__name__)

PROFILE_NAME = "transformers"  # the CLIP profile of every converted checkpoint (its resize and filter vary)
CONVERT_HINT = "pip install 'mt-photos-triton[convert]'"
HF_PREFIX = "hf:"
# model_type -> the text inputs optimum's two-tower ONNX config gives the graph (optimum-onnx
# optimum/exporters/onnx/model_configs.py: CLIPOnnxConfig, ChineseCLIPOnnxConfig, SiglipOnnxConfig without a mask,
# MetaCLIP2OnnxConfig's "monolith" variant)
TWO_TOWERS: dict[str, tuple[str, ...]] = {
    "clip": ("input_ids", "attention_mask"),
    "chinese_clip": ("input_ids", "attention_mask"),
    "metaclip_2": ("input_ids", "attention_mask"),
    "siglip": ("input_ids",),
}
OPTIMUM_TASK = "feature-extraction"  # optimum's task whose outputs are image_embeds and text_embeds
IMAGE_INPUT, IMAGE_OUTPUT, TEXT_OUTPUT = "pixel_values", "image_embeds", "text_embeds"
# Chinese-CLIP tokenises at 52 (Chinese-CLIP cn_clip/clip/utils.py `tokenize`), not its BERT's 512 positions
CONTEXT_LENGTHS = {"chinese_clip": 52}
# transformers' image processors name Pillow's filters by number (PIL.Image.Resampling)
RESAMPLE = {2: "bilinear", 3: "bicubic"}
RESCALE_FACTOR = 1 / 255
NORM_TOLERANCE = 1e-4  # an embedding whose L2 norm is 1 within this is taken as normalised
# the checkpoint's files a Hugging Face download takes (weights in either format, both processor-config names)
HF_PATTERNS = [
    "config.json", "*.safetensors", "pytorch_model.bin", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "vocab.txt", "merges.txt",
    "*.model",
]


@dataclass(frozen=True)
class ImageSettings:
    """What the checkpoint's image processor does, in the terms of pipelines/clip_profile.py: `resize`
    `hf_shortest_crop` (shorter side to `size` as transformers rounds it, centre `size` x `size` crop) or `exact`
    (to `size` x `size`), with Pillow's `interpolation`, then x / 255, (x - mean) / std."""

    resize: str
    size: int
    interpolation: str
    mean: list[float]
    std: list[float]


@dataclass(frozen=True)
class TextSettings:
    context_length: int
    pad_token: str
    inputs: tuple[str, ...]


def _convert_libraries() -> Any:
    """transformers (torch and optimum checked with it), or the ExportError that says how to get them."""
    missing = []
    for module in ("torch", "transformers", "optimum.exporters.onnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module.split(".")[0])
    if missing:
        raise ExportError(f"converting a transformers checkpoint needs {', '.join(missing)}: {CONVERT_HINT}")
    import transformers

    return transformers


def model_type(directory: Path) -> str | None:
    """The checkpoint's `model_type`, or None where `directory` is not a transformers checkpoint (immich's
    open_clip `config.json` has none)."""
    config = directory / "config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    return str(value) if value else None


def is_checkpoint(directory: Path) -> bool:
    return model_type(directory) is not None


def hf_repo(name: str) -> str | None:
    """`hf:<org>/<name>` -> `<org>/<name>`; None for any other model name."""
    if not name.startswith(HF_PREFIX):
        return None
    repo = name[len(HF_PREFIX):].strip("/")
    if repo.count("/") != 1:
        raise ExportError(f"--model {name}: write a Hugging Face model as hf:<org>/<name>")
    return repo


# ---------------------------------------------------------------------------------------- checkpoint files


def _square(value: Any, what: str) -> int:
    """An int, or a {"height", "width"} / {"shortest_edge"} size that is square."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and "height" in value and value.get("height") == value.get("width"):
        return int(value["height"])
    raise ExportError(f"image processor {what} {value}: only square sizes are served")


def image_settings(processor: Any) -> ImageSettings:
    """The checkpoint's image processor (as transformers loads it, defaults filled in) in ImageSettings, or an
    ExportError naming the step no pipeline here does."""
    resample = int(getattr(processor, "resample", 3))
    if resample not in RESAMPLE:
        raise ExportError(f"image processor resample={resample}: only bicubic (3) and bilinear (2) are served")
    if not getattr(processor, "do_resize", True):
        raise ExportError("image processor does not resize: not served (encoders take one fixed size)")
    if not getattr(processor, "do_rescale", True) or abs(float(processor.rescale_factor) - RESCALE_FACTOR) > 1e-12:
        raise ExportError(f"image processor rescale {getattr(processor, 'rescale_factor', None)}: only 1/255 is served")
    size = processor.size
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    if isinstance(size, dict) and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if crop is None or _square(crop, "crop_size") != edge:
            raise ExportError(f"image processor: shortest edge {edge} with crop {crop}: only a centre crop of the "
                              "shortest edge's size is served")
        resize, square = HF_SHORTEST_CROP, edge
    else:
        square = _square(size, "size")
        if crop is not None and _square(crop, "crop_size") != square:
            raise ExportError(f"image processor: resize to {square} then crop to {crop}: not served")
        resize = EXACT
    normalise = getattr(processor, "do_normalize", True)
    mean = [float(v) for v in processor.image_mean] if normalise else [0.0, 0.0, 0.0]
    std = [float(v) for v in processor.image_std] if normalise else [1.0, 1.0, 1.0]
    return ImageSettings(resize, square, RESAMPLE[resample], mean, std)


def text_settings(kind: str, config: Any, tokenizer: Any) -> TextSettings:
    """The context length the towers take (their position table, or the length the model was trained at), the
    pad token and the text inputs."""
    positions = int(config.text_config.max_position_embeddings)
    length = min(CONTEXT_LENGTHS.get(kind, positions), positions)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < length:
        length = limit
    if getattr(tokenizer, "padding_side", "right") != "right":  # clip_tokenize pads on the right
        raise ExportError(f"the tokenizer pads on the {tokenizer.padding_side}: only right padding is served")
    pad = tokenizer.pad_token or tokenizer.eos_token
    if pad is None:
        raise ExportError("the tokenizer has neither a pad nor an end-of-text token to pad queries with")
    return TextSettings(length, str(pad), TWO_TOWERS[kind])


def fast_tokenizer(transformers: Any, directory: Path) -> Any:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    if not tokenizer.is_fast:
        raise ExportError(f"{directory} has no tokenizer.json and transformers cannot convert its "
                          f"{type(tokenizer).__name__} to one")
    return tokenizer


# -------------------------------------------------------------------------------------------------- graphs


def extract_tower(model: Any, inputs: tuple[str, ...], output: str) -> Any:
    """The part of `model` that computes `output` from `inputs` only: nodes reached backwards from it, the
    initializers they read. Written here rather than onnx.utils.Extractor, whose shape inference refuses
    graphs over 2 GB."""
    import onnx

    needed, nodes = {output}, []
    for node in reversed(model.graph.node):
        if any(name in needed for name in node.output):
            nodes.append(node)
            needed.update(name for name in node.input if name)
    given = {i.name: i for i in graph_inputs(model)}
    stray = sorted(needed & set(given) - set(inputs))
    if stray:
        raise ExportError(f"{output} depends on {stray} besides {list(inputs)}: the towers do not separate")
    tower = onnx.ModelProto()
    tower.CopyFrom(model)
    graph = tower.graph
    del graph.node[:], graph.input[:], graph.output[:], graph.value_info[:]
    graph.node.extend(reversed(nodes))
    graph.input.extend(given[name] for name in inputs if name in needed or name == inputs[0])
    graph.output.extend(o for o in model.graph.output if o.name == output)
    kept = [i for i in model.graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return tower


def ids_as_int32(model: Any) -> None:
    """Integer inputs become int32 (what clip_tokenize gives every model), cast to what the graph reads."""
    from onnx import TensorProto, helper

    for value in graph_inputs(model):
        if value.type.tensor_type.elem_type != TensorProto.INT64:
            continue
        original = value.name
        cast = f"{original}__int64"
        for node in model.graph.node:
            node.input[:] = [cast if name == original else name for name in node.input]
        model.graph.node.insert(0, helper.make_node("Cast", [original], [cast], to=TensorProto.INT64))
        value.type.tensor_type.elem_type = TensorProto.INT32


def normalised(model: Any, feeds: dict[str, NDArray[Any]]) -> bool:
    """True when the tower's embeddings have an L2 norm of 1 (within NORM_TOLERANCE), False after the tower
    has been given the division by it."""
    from onnx import helper, numpy_helper

    output = model.graph.output[0].name
    got = session(model).run([output], feeds)[0]
    if np.all(np.abs(np.linalg.norm(got, axis=-1) - 1) <= NORM_TOLERANCE):
        return True
    raw, norm, axes = f"{output}__raw", f"{output}__norm", f"{output}__norm_axes"
    for node in model.graph.node:
        node.output[:] = [raw if name == output else name for name in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
    model.graph.node.extend([
        helper.make_node("ReduceL2", [raw, axes], [norm], keepdims=1),
        helper.make_node("Div", [raw, norm], [output]),
    ])
    return False


# ------------------------------------------------------------------------------------------------- convert


class _Steps:
    """One line per step with its time (optimum's export of a ViT-B takes minutes on a small CPU)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()

    def __call__(self, what: str) -> None:
        self.done += 1
        log.info("clip convert [%d/%d] %s (%.1f s so far)", self.done, self.total, what,
                 time.monotonic() - self.started)


def profile_of(images: ImageSettings) -> ClipProfile:
    """immich's profile with the checkpoint's resize and filter: Pillow RGB decode, tokenizer.json, int32 ids
    (ids_as_int32), immich's number format."""
    return replace(IMMICH, name=PROFILE_NAME, resize=images.resize, interpolation=images.interpolation)


def convert(directory: Path, work: Path) -> tuple[Path, ClipProfile, list[str]]:
    """The checkpoint in `directory` converted into the immich layout under `work`; the CLIP profile its image
    processor asks for, and notes for the export's result."""
    kind = model_type(directory)
    if kind not in TWO_TOWERS:
        raise ExportError(f"{directory}: model_type {kind!r} is not a two-tower CLIP optimum exports; "
                          f"converted are: {', '.join(sorted(TWO_TOWERS))}")
    transformers = _convert_libraries()
    from optimum.exporters.onnx import main_export

    steps = _Steps(4)
    config = transformers.AutoConfig.from_pretrained(str(directory))
    images = image_settings(transformers.AutoImageProcessor.from_pretrained(str(directory), use_fast=False))
    tokenizer = fast_tokenizer(transformers, directory)
    text = text_settings(kind, config, tokenizer)
    steps(f"read {kind} checkpoint: {images.resize} {images.size}px {images.interpolation}, "
          f"{text.context_length} tokens")
    exported = work / "optimum"
    main_export(str(directory), output=str(exported), task=OPTIMUM_TASK, device="cpu", library_name="transformers")
    steps("optimum exported the model")

    whole = load(exported / "model.onnx")
    layout = work / "converted"
    image_feeds = {IMAGE_INPUT: np.zeros((2, 3, images.size, images.size), np.float32)}
    tokens = tokenizer(["a photo", "红色"], padding="max_length", max_length=text.context_length, truncation=True)
    text_feeds = {name: np.array(tokens[name], np.int32) for name in ("input_ids", "attention_mask")}
    notes = []
    for what, inputs, output, feeds in (
        ("visual", (IMAGE_INPUT,), IMAGE_OUTPUT, image_feeds),
        ("textual", text.inputs, TEXT_OUTPUT, {k: v for k, v in text_feeds.items() if k in text.inputs}),
    ):
        tower = extract_tower(whole, inputs, output)
        ids_as_int32(tower)
        if not normalised(tower, feeds):
            notes.append(f"{what}: L2 normalisation appended (the model's output was not normalised)")
        save(tower, layout / what)
    del whole
    steps("towers cut out of the exported graph")

    tokenizer.backend_tokenizer.save(str(layout / "textual" / "tokenizer.json"))
    (layout / "textual" / "tokenizer_config.json").write_text(json.dumps({"pad_token": text.pad_token}) + "\n")
    (layout / "visual" / "preprocess_cfg.json").write_text(json.dumps({
        "size": [images.size, images.size], "mean": images.mean, "std": images.std,
        "interpolation": images.interpolation, "resize_mode": images.resize,
    }, indent=2) + "\n")
    (layout / "config.json").write_text(json.dumps({
        "converted_from": kind, "text_cfg": {"context_length": text.context_length},
    }, indent=2) + "\n")
    steps("immich layout written")
    notes.append(f"converted from a transformers {kind} checkpoint with optimum "
                 f"({images.resize} {images.size}px {images.interpolation}; {text.context_length}-token queries)")
    return layout, profile_of(images), notes
