"""Random-weight CLIP encoders with immich's interfaces, in immich's file layout.

No real CLIP weights can be downloaded here, so the tests (tiny sizes) and the bench (the default model's
full sizes: ViT-B/32 at 224, an XLM-R-base-sized text tower with a 250002-token vocabulary) build stand-ins:

- visual: `image` float32 [1,3,S,S] -> `embedding` [1,D], L2-normalised; a ViT (patch convolution, class
  token, pre-norm blocks) whose graph pins the batch to 1 the way a static torch export does (Reshape
  targets and the class-token Expand carry a literal 1), so the export's batch rewrite has real work to do;
- textual: `text` int32 [1,L] -> `embedding` (the mask derived from the pad id in the graph), or M-CLIP's
  `input_ids` + `attention_mask`; a transformer with masked mean pooling and a projection;
- a `tokenizers` Unigram tokenizer with XLM-R's special tokens (<s>=0, <pad>=1, </s>=2, <unk>=3).

Built with onnx helpers and numpy only (no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

OPSET = 17
WEIGHT_SCALE = 0.02
MASK_BIAS = -10000.0
QUICK_GELU = 1.702
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PAD_ID = 1
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # XLM-R's ids 0..3
MASK_TOKEN = "<mask>"


BATCH_FIRST = "batch_first"  # HF text towers: view(batch, seq, heads, head_dim)
TORCH_MHA = "torch_mha"  # open_clip's visual nn.MultiheadAttention: view(seq, batch*heads, head_dim)


@dataclass(frozen=True)
class TowerSize:
    width: int
    layers: int
    heads: int
    attention: str = BATCH_FIRST


@dataclass(frozen=True)
class StandInSpec:
    image_size: int = 32
    patch_size: int = 8
    visual: TowerSize = TowerSize(32, 1, 2)
    text: TowerSize = TowerSize(32, 1, 2)
    vocab_size: int = 0  # 0: the test tokenizer's own vocabulary size
    context_length: int = 77
    embed_dim: int = 16
    mclip: bool = False
    seed: int = 0


# the default model's encoders at full size, for the bench
DEFAULT_MODEL_SPEC = StandInSpec(
    image_size=224,
    patch_size=32,
    visual=TowerSize(768, 12, 12, TORCH_MHA),
    text=TowerSize(768, 12, 12),
    vocab_size=250002,
    context_length=77,
    embed_dim=512,
)


class _GraphBuilder:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def const(self, array: NDArray, prefix: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def weight(self, *shape: int, scale: float = WEIGHT_SCALE) -> str:
        return self.const((self.rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32), "w")

    def shape(self, *dims: int) -> str:
        return self.const(np.array(dims, dtype=np.int64), "shape")

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        from onnx import helper

        out = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x: str, fan_in: int, fan_out: int) -> str:
        return self.op("Add", [self.op("MatMul", [x, self.weight(fan_in, fan_out)]), self.const(np.zeros(fan_out, np.float32))])

    def layer_norm(self, x: str, width: int) -> str:
        gamma = self.const(np.ones(width, np.float32))
        beta = self.const(np.zeros(width, np.float32))
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def block(self, x: str, tokens: int, size: TowerSize, bias: str | None) -> str:
        """One pre-norm transformer block on [1, tokens, width]; reshape targets pin the batch to 1."""
        h = self.layer_norm(x, size.width)
        attend = self.torch_attention if size.attention == TORCH_MHA else self.attention
        x = self.op("Add", [x, attend(h, tokens, size, bias)])
        h = self.linear(self.layer_norm(x, size.width), size.width, 4 * size.width)
        h = self.op("Mul", [h, self.op("Sigmoid", [self.op("Mul", [h, self.const(np.array(QUICK_GELU, np.float32))])])])
        return self.op("Add", [x, self.linear(h, 4 * size.width, size.width)])

    def torch_attention(self, h: str, tokens: int, size: TowerSize, bias: str | None) -> str:
        """Attention as torch traces nn.MultiheadAttention (need_weights=False) with the batch frozen to 1:
        sequence-first, the batch folded into other axes ([seq, batch*heads, head_dim], [seq*batch, width])."""
        head_dim = size.width // size.heads
        h = self.op("Transpose", [h], perm=[1, 0, 2])  # [seq, batch, width]
        q, k, v = (self.linear(h, size.width, size.width) for _ in range(3))
        heads = []
        for t in (q, k, v):
            t = self.op("Transpose", [self.op("Reshape", [t, self.shape(tokens, size.heads, head_dim)])], perm=[1, 0, 2])
            heads.append(self.op("Reshape", [t, self.shape(1, size.heads, tokens, head_dim)]))
        q, k, v = heads
        scores = self.op("MatMul", [q, self.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = self.op("Mul", [scores, self.const(np.array(head_dim**-0.5, np.float32))])
        if bias is not None:
            scores = self.op("Add", [scores, bias])
        out = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])  # [batch, heads, seq, head_dim]
        out = self.op("Reshape", [self.op("Transpose", [out], perm=[2, 0, 1, 3]), self.shape(tokens, size.width)])
        out = self.op("Reshape", [self.linear(out, size.width, size.width), self.shape(tokens, 1, size.width)])
        return self.op("Transpose", [out], perm=[1, 0, 2])

    def attention(self, h: str, tokens: int, size: TowerSize, bias: str | None) -> str:
        """Batch-first attention as HF towers trace it: view(1, seq, heads, head_dim)."""
        head_dim = size.width // size.heads
        q, k, v = (self.linear(h, size.width, size.width) for _ in range(3))
        split = self.shape(1, tokens, size.heads, head_dim)
        q = self.op("Transpose", [self.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
        k = self.op("Transpose", [self.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
        v = self.op("Transpose", [self.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
        scores = self.op("Mul", [self.op("MatMul", [q, k]), self.const(np.array(head_dim**-0.5, np.float32))])
        if bias is not None:
            scores = self.op("Add", [scores, bias])
        attention = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
        merged = self.op("Reshape", [self.op("Transpose", [attention], perm=[0, 2, 1, 3]), self.shape(1, tokens, size.width)])
        return self.linear(merged, size.width, size.width)

    def l2_normalise(self, x: str, output: str) -> str:
        norm = self.op("ReduceL2", [x], axes=[-1], keepdims=1)
        return self.op("Div", [x, norm], output=output)

    def save(self, path: Path, inputs: list, outputs: list, name: str) -> None:
        import onnx
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mt-photos-triton")
        model.ir_version = 8
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))


def build_visual(path: Path, spec: StandInSpec) -> None:
    from onnx import TensorProto, helper

    size = spec.visual
    g = _GraphBuilder(np.random.default_rng(spec.seed))
    grid = spec.image_size // spec.patch_size
    patches = grid * grid
    x = g.op("Conv", ["image", g.weight(size.width, 3, spec.patch_size, spec.patch_size)], strides=[spec.patch_size] * 2)
    x = g.op("Transpose", [g.op("Reshape", [x, g.shape(1, size.width, patches)])], perm=[0, 2, 1])
    # open_clip: class_embedding.expand(batch, 1, -1), exported with the batch frozen to 1
    cls = g.op("Expand", [g.weight(size.width), g.shape(1, 1, size.width)])
    x = g.op("Concat", [cls, x], axis=1)
    x = g.op("Add", [x, g.weight(patches + 1, size.width)])
    x = g.layer_norm(x, size.width)
    for _ in range(size.layers):
        x = g.block(x, patches + 1, size, bias=None)
    pooled = g.layer_norm(g.op("Gather", [x, g.const(np.array(0, np.int64))], axis=1), size.width)
    g.l2_normalise(g.op("MatMul", [pooled, g.weight(size.width, spec.embed_dim)]), "embedding")
    g.save(
        path,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, spec.image_size, spec.image_size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, spec.embed_dim])],
        "clip_visual_standin",
    )


def build_textual(path: Path, spec: StandInSpec, vocab_size: int) -> None:
    from onnx import TensorProto, helper

    size = spec.text
    length = spec.context_length
    g = _GraphBuilder(np.random.default_rng(spec.seed + 1))
    ids_input = "input_ids" if spec.mclip else "text"
    ids = g.op("Cast", [ids_input], to=TensorProto.INT64)
    if spec.mclip:
        mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    else:  # single-input models derive the mask from the pad id inside the graph
        is_pad = g.op("Equal", [ids, g.const(np.array(PAD_ID, np.int64))])
        mask = g.op("Cast", [g.op("Not", [is_pad])], to=TensorProto.FLOAT)
    x = g.op("Gather", [g.weight(vocab_size, size.width), ids], axis=0)
    x = g.op("Add", [x, g.weight(length, size.width)])
    inverted = g.op("Sub", [g.const(np.array(1.0, np.float32)), mask])
    bias = g.op("Reshape", [g.op("Mul", [inverted, g.const(np.array(MASK_BIAS, np.float32))]), g.shape(1, 1, 1, length)])
    for _ in range(size.layers):
        x = g.block(x, length, size, bias=bias)
    x = g.layer_norm(x, size.width)
    weights = g.op("Reshape", [mask, g.shape(1, length, 1)])
    summed = g.op("ReduceSum", [g.op("Mul", [x, weights]), g.const(np.array([1], np.int64))], keepdims=0)
    count = g.op("ReduceSum", [mask, g.const(np.array([1], np.int64))], keepdims=1)
    pooled = g.op("Div", [summed, count])
    g.l2_normalise(g.op("MatMul", [pooled, g.weight(size.width, spec.embed_dim)]), "embedding")
    names = ["input_ids", "attention_mask"] if spec.mclip else ["text"]
    g.save(
        path,
        [helper.make_tensor_value_info(n, TensorProto.INT32, [1, length]) for n in names],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, spec.embed_dim])],
        "clip_textual_standin",
    )


# pieces of the test vocabulary: enough to make Chinese, English, mixed and emoji text tokenise non-trivially
_WORDS = (
    "a photo of the red blue green cat dog on in with and sea beach sunset mountain city night people car "
    "snow tree flower house street food child smile 红色 蓝色 绿色 猫 狗 海 海边 日落 山 城市 夜景 人 花 雪 "
    "照片 一只 的 在 和 红 蓝 绿 色 小 大 天 空 🐱 🐶 🌅 ❤️ 😀"
).split()


def build_tokenizer(directory: Path, vocab_size: int = 0) -> int:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json like immich's XLM-R files; the size
    of the vocabulary (synthetic pieces fill it up to `vocab_size` when that is larger)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces: list[tuple[str, float]] = [(t, 0.0) for t in SPECIAL_TOKENS]
    seen = {t for t, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, score))

    for rank, word in enumerate(_WORDS):
        add(f"▁{word}", -3.0 - rank * 0.01)
        add(word, -5.0 - rank * 0.01)
    for char in sorted({c for w in _WORDS for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")):
        add(char, -8.0)
    add("▁", -6.0)
    filler = 0
    while len(pieces) < vocab_size - 1:
        add(f"▁x{filler:06d}", -12.0)
        filler += 1
    add(MASK_TOKEN, 0.0)

    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=SPECIAL_TOKENS.index("<unk>")))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer.add_special_tokens([*SPECIAL_TOKENS, MASK_TOKEN])
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    special = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": MASK_TOKEN,
               "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}
    config = {**special, "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    return tokenizer.get_vocab_size()


def write_immich_layout(directory: Path, spec: StandInSpec) -> Path:
    """A complete immich CLIP model directory (config.json, visual/, textual/) built from `spec`."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(directory / "textual", spec.vocab_size)
    build_visual(directory / "visual" / "model.onnx", spec)
    build_textual(directory / "textual" / "model.onnx", spec, vocab)
    preprocess = {"size": [spec.image_size, spec.image_size], "mode": "RGB", "mean": list(CLIP_MEAN),
                  "std": list(CLIP_STD), "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
    (directory / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess))
    config = {
        "embed_dim": spec.embed_dim,
        "vision_cfg": {"image_size": spec.image_size, "layers": spec.visual.layers, "width": spec.visual.width,
                       "patch_size": spec.patch_size},
        "text_cfg": {"context_length": spec.context_length, "vocab_size": vocab, "width": spec.text.width,
                     "heads": spec.text.heads, "layers": spec.text.layers},
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory
