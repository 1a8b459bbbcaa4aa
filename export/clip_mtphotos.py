"""The mt-photos-ai layout of `export clip --from DIR`: the official MT Photos AI service's Chinese-CLIP ViT-B-16.

DIR holds the three files a user copies out of the old container (README "Switching from mt-photos-ai"):
`vit-b-16.img.fp32.onnx`, `vit-b-16.txt.fp32.onnx` (Chinese-CLIP's deployment export, cn_clip/deploy/
pytorch_to_onnx.py: `image` float32 [1,3,224,224] -> `unnorm_image_features`, `text` int64 [1,52] ->
`unnorm_text_features`, neither normalised, batch fixed to 1 as torch traced it) and `vocab.txt` (Chinese-CLIP's
BERT vocabulary). The numbers no file carries are mt-photos-ai's constants (onnx/clip.py): 224 px, CLIP's mean
and std, 52 tokens. The files are served with the mt-photos-ai CLIP profile (pipelines/clip_profile.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.clip_configs import Contract
from export.clip_graph import SINGLE_TEXT_INPUTS
from export.common import ExportError
from export.onnx_graph import graph_inputs, static_dims
from mt_photos_triton.pipelines.clip_profile import MT_PHOTOS_AI

# the name export records and `served_model` reports: Chinese-CLIP's ViT-B-16 with mt-photos-ai's procedures;
# CLIP_VISUAL_MODEL_NAME / CLIP_TEXTUAL_MODEL_NAME set to it keep `export auto` (and the container's start) on it
MODEL_NAME = "Chinese-CLIP-ViT-B-16__mt-photos-ai"
VISUAL_FILE = "vit-b-16.img.fp32.onnx"
TEXTUAL_FILE = "vit-b-16.txt.fp32.onnx"
VOCAB_FILE = "vocab.txt"
FILES = (VISUAL_FILE, TEXTUAL_FILE, VOCAB_FILE)
IMAGE_SIZE = 224  # onnx/clip.py:21 IMG_SIZE
MEAN = [0.48145466, 0.4578275, 0.40821073]  # onnx/clip.py:24
STD = [0.26862954, 0.26130258, 0.27577711]  # onnx/clip.py:25
CONTEXT_LENGTH = 52  # onnx/clip.py:109 tokenize_numpy([txt], 52)
PAD_TOKEN = "[PAD]"  # id 0 in the vocabulary; tokenize_numpy pads with zeros
# the interface onnx/clip.py:92 and :110 run: (input name, ONNX element type, dims after the batch), output name
VISUAL_INTERFACE = ("image", 1, [3, IMAGE_SIZE, IMAGE_SIZE], "unnorm_image_features")  # 1 = FLOAT
TEXTUAL_INTERFACE = ("text", 7, [CONTEXT_LENGTH], "unnorm_text_features")  # 7 = INT64


def is_layout(directory: Path) -> bool:
    """Whether `directory` holds the three files (no other flag tells export which layout it is)."""
    return directory.is_dir() and all((directory / name).is_file() for name in FILES)


def local_layout(source: str | None) -> bool:
    return source is not None and is_layout(Path(source))


def check_interface(model: Any, interface: tuple[str, int, list[int], str], what: str) -> None:
    """The file has the official interface: one input of that name, type and item shape, one output of that name."""
    name, element_type, dims, output = interface
    inputs, outputs = graph_inputs(model), list(model.graph.output)
    found = [(i.name, i.type.tensor_type.elem_type, static_dims(i)[1:]) for i in inputs]
    if len(inputs) != 1 or found[0][:2] != (name, element_type) or found[0][2] != dims:
        raise ExportError(f"{what}: inputs {found}, expected one {name!r} of type {element_type} [N,{dims}] "
                          "as mt-photos-ai runs it")
    if [o.name for o in outputs] != [output]:
        raise ExportError(f"{what}: outputs {[o.name for o in outputs]}, expected {output!r}")


def read_contract(directory: Path) -> Contract:
    return Contract(
        name=MODEL_NAME, image_size=IMAGE_SIZE, mean=list(MEAN), std=list(STD), context_length=CONTEXT_LENGTH,
        pad_token=PAD_TOKEN, canonicalize=False, text_inputs=SINGLE_TEXT_INPUTS, profile=MT_PHOTOS_AI,
        tokenizer_file=VOCAB_FILE,
    )
