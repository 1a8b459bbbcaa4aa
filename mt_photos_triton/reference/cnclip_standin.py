"""Random-weight stand-ins for mt-photos-ai's two Chinese-CLIP ONNX files, with their interface, in their layout.

The official files are Chinese-CLIP's deployment export (cn_clip/deploy/pytorch_to_onnx.py: torch.onnx.export at
opset 13 without dynamic axes): `image` float32 [1,3,224,224] -> `unnorm_image_features` float32 [1,512];
`text` int64 [1,52] -> `unnorm_text_features` float32 [1,512]; features not normalised. cn-clip cannot be
installed here beside the pinned torch (it needs torchvision and timm), so these are built with onnx helpers
and numpy: the same names, types and shapes, the batch pinned to 1 in the graph the way a static torch trace
pins it (Reshape targets and the class-token Expand carry a literal 1), narrow towers so tests stay fast:

- visual: 16 px patch convolution, class token, position embedding, pre-norm blocks with attention traced as
  torch's nn.MultiheadAttention (Chinese-CLIP's ViT is OpenAI's `VisualTransformer`), the class token's
  LayerNorm projected to 512;
- textual: token + position embeddings over the cn-clip vocabulary, attention masked where the id is 0
  (Chinese-CLIP's `text.ne(pad_index)`, [PAD] = 0), blocks, the [CLS] position projected to 512
  (cn_clip/clip/model.py `encode_text`).

`vocab.txt` is Chinese-CLIP's own (from the cn-clip wheel: tests fetch it with `pip download --no-deps`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mt_photos_triton.reference.clip_standins import BATCH_FIRST, MASK_BIAS, TORCH_MHA, TowerSize, _GraphBuilder

VISUAL_FILE = "vit-b-16.img.fp32.onnx"
TEXTUAL_FILE = "vit-b-16.txt.fp32.onnx"
VOCAB_FILE = "vocab.txt"
IMAGE_SIZE = 224
PATCH_SIZE = 16
CONTEXT_LENGTH = 52
EMBED_DIM = 512
PAD_ID = 0
# the cn-clip 1.6.0 wheel's cn_clip/clip/vocab.txt, byte for byte mt-photos-ai's onnx/vocab.txt
VOCAB_SHA256 = "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c"
VOCAB_IN_WHEEL = "cn_clip/clip/vocab.txt"
CN_CLIP_PACKAGE = "cn-clip==1.6.0"


@dataclass(frozen=True)
class CnClipSpec:
    visual: TowerSize = TowerSize(32, 1, 2, TORCH_MHA)
    text: TowerSize = TowerSize(32, 1, 2, BATCH_FIRST)
    embed_dim: int = EMBED_DIM
    seed: int = 0


def build_visual(path: Path, spec: CnClipSpec) -> None:
    from onnx import TensorProto, helper

    size = spec.visual
    g = _GraphBuilder(np.random.default_rng(spec.seed))
    patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    # weights large enough that the channel order of the input shows in the features
    x = g.op("Conv", ["image", g.weight(size.width, 3, PATCH_SIZE, PATCH_SIZE, scale=0.2)], strides=[PATCH_SIZE] * 2)
    x = g.op("Transpose", [g.op("Reshape", [x, g.shape(1, size.width, patches)])], perm=[0, 2, 1])
    cls = g.op("Expand", [g.weight(size.width), g.shape(1, 1, size.width)])
    x = g.op("Add", [g.op("Concat", [cls, x], axis=1), g.weight(patches + 1, size.width)])
    x = g.layer_norm(x, size.width)
    for _ in range(size.layers):
        x = g.block(x, patches + 1, size, bias=None)
    pooled = g.layer_norm(g.op("Gather", [x, g.const(np.array(0, np.int64))], axis=1), size.width)
    g.op("MatMul", [pooled, g.weight(size.width, spec.embed_dim, scale=0.2)], output="unnorm_image_features")
    g.save(
        path,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("unnorm_image_features", TensorProto.FLOAT, [1, spec.embed_dim])],
        "cnclip_visual_standin",
    )


def build_textual(path: Path, spec: CnClipSpec, vocab_size: int) -> None:
    from onnx import TensorProto, helper

    size = spec.text
    g = _GraphBuilder(np.random.default_rng(spec.seed + 1))
    is_pad = g.op("Equal", ["text", g.const(np.array(PAD_ID, np.int64))])
    mask = g.op("Cast", [g.op("Not", [is_pad])], to=TensorProto.FLOAT)
    x = g.op("Gather", [g.weight(vocab_size, size.width, scale=0.5), "text"], axis=0)
    x = g.layer_norm(g.op("Add", [x, g.weight(CONTEXT_LENGTH, size.width)]), size.width)
    inverted = g.op("Sub", [g.const(np.array(1.0, np.float32)), mask])
    bias = g.op("Reshape", [g.op("Mul", [inverted, g.const(np.array(MASK_BIAS, np.float32))]),
                            g.shape(1, 1, 1, CONTEXT_LENGTH)])
    for _ in range(size.layers):
        x = g.block(x, CONTEXT_LENGTH, size, bias=bias)
    first = g.op("Gather", [x, g.const(np.array(0, np.int64))], axis=1)  # the [CLS] position
    g.op("MatMul", [first, g.weight(size.width, spec.embed_dim, scale=0.2)], output="unnorm_text_features")
    g.save(
        path,
        [helper.make_tensor_value_info("text", TensorProto.INT64, [1, CONTEXT_LENGTH])],
        [helper.make_tensor_value_info("unnorm_text_features", TensorProto.FLOAT, [1, spec.embed_dim])],
        "cnclip_textual_standin",
    )


def vocab_size(vocab_file: Path) -> int:
    with open(vocab_file, encoding="utf-8") as lines:
        return sum(1 for _ in lines)


def write_mtphotos_layout(directory: Path, vocab_file: Path, spec: CnClipSpec = CnClipSpec()) -> Path:
    """The three files as a user copies them out of the mt-photos-ai container, the models built from `spec`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(vocab_file, directory / VOCAB_FILE)
    build_visual(directory / VISUAL_FILE, spec)
    build_textual(directory / TEXTUAL_FILE, spec, vocab_size(vocab_file))
    return directory
