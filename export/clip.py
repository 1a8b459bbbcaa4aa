"""Export of the clip family: an immich CLIP model -> six Triton models.

    clip_image  (ensemble)  image_bytes -> clip_image_preprocess (python) -> clip_visual (onnxruntime) -> embedding
    clip_text   (ensemble)  text        -> clip_tokenize (python)         -> clip_textual (onnxruntime) -> embedding

Sources: Hugging Face `immich-app/<name>` (HF_ENDPOINT honoured, revision resolved to a commit and
recorded, every file's sha256 recorded) or a local directory / zip in the same layout:
`config.json`, `visual/{model.onnx,preprocess_cfg.json}`, `textual/{model.onnx,tokenizer.json,
tokenizer_config.json}`. immich's ONNX files have a static batch of 1; each gets a batch axis (its batch-1
constants rewritten, else its Reshape targets freed where the trace folded the batch, else a Scan over items),
verified against batch-1 runs of the original (max abs diff <= 1e-5) before it is written, or is served with a
batch of at most 1 when none holds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from export.common import (
    ExportError,
    ExportResult,
    code_fingerprint,
    download_hf_snapshot,
    hf_endpoint,
    sha256_file,
    unpack_local,
)

log = logging.getLogger(__name__)

FAMILY = "clip"
DEFAULT_MODEL = "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k"
HF_ORGANISATION = "immich-app"
# The revision export asks Hugging Face for (a branch, tag or commit); the commit it resolves to is recorded
# in the manifest, and setting this variable to that commit reproduces an export exactly.
HF_REVISION_ENV = "CLIP_HF_REVISION"
HF_DEFAULT_REVISION = "main"
HF_FILES = [
    "config.json",
    "visual/model.onnx",
    "visual/model.onnx_data",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/model.onnx_data",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
]
CACHE_ENV = "MT_PHOTOS_CACHE"

# immich server/src/constants.ts CLIP_MODEL_INFO: every name immich offers and its embedding size
MODEL_DIMS: dict[str, int] = {
    **dict.fromkeys(
        ["RN101__openai", "RN101__yfcc15m", "ViT-B-16__laion400m_e31", "ViT-B-16__laion400m_e32", "ViT-B-16__openai",
         "ViT-B-32__laion2b-s34b-b79k", "ViT-B-32__laion2b_e16", "ViT-B-32__laion400m_e31", "ViT-B-32__laion400m_e32",
         "ViT-B-32__openai", "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k", "XLM-Roberta-Large-Vit-B-32"],
        512,
    ),
    **dict.fromkeys(
        ["RN50x4__openai", "ViT-B-16-plus-240__laion400m_e31", "ViT-B-16-plus-240__laion400m_e32",
         "XLM-Roberta-Large-Vit-B-16Plus"],
        640,
    ),
    **dict.fromkeys(
        ["LABSE-Vit-L-14", "RN50x16__openai", "ViT-B-16-SigLIP-256__webli", "ViT-B-16-SigLIP-384__webli",
         "ViT-B-16-SigLIP-512__webli", "ViT-B-16-SigLIP-i18n-256__webli", "ViT-B-16-SigLIP__webli",
         "ViT-L-14-336__openai", "ViT-L-14-quickgelu__dfn2b", "ViT-L-14__laion2b-s32b-b82k", "ViT-L-14__laion400m_e31",
         "ViT-L-14__laion400m_e32", "ViT-L-14__openai", "XLM-Roberta-Large-Vit-L-14", "nllb-clip-base-siglip__mrl",
         "nllb-clip-base-siglip__v1", "ViT-B-16-SigLIP2__webli", "ViT-B-32-SigLIP2-256__webli"],
        768,
    ),
    **dict.fromkeys(
        ["RN50__cc12m", "RN50__openai", "RN50__yfcc15m", "RN50x64__openai", "ViT-H-14-378-quickgelu__dfn5b",
         "ViT-H-14-quickgelu__dfn5b", "ViT-H-14__laion2b-s32b-b79k", "ViT-L-16-SigLIP-256__webli",
         "ViT-L-16-SigLIP-384__webli", "ViT-g-14__laion2b-s12b-b42k",
         "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k", "ViT-L-16-SigLIP2-256__webli",
         "ViT-L-16-SigLIP2-384__webli", "ViT-L-16-SigLIP2-512__webli"],
        1024,
    ),
    **dict.fromkeys(
        ["ViT-SO400M-14-SigLIP-384__webli", "nllb-clip-large-siglip__mrl", "nllb-clip-large-siglip__v1",
         "ViT-SO400M-14-SigLIP2__webli", "ViT-SO400M-14-SigLIP2-378__webli", "ViT-SO400M-16-SigLIP2-256__webli",
         "ViT-SO400M-16-SigLIP2-384__webli", "ViT-SO400M-16-SigLIP2-512__webli"],
        1152,
    ),
    **dict.fromkeys(["ViT-gopt-16-SigLIP2-256__webli", "ViT-gopt-16-SigLIP2-384__webli"], 1536),
}
# immich machine-learning models/constants.py _MCLIP_MODELS: text towers taking input_ids + attention_mask
MCLIP_MODELS = frozenset(
    {"LABSE-Vit-L-14", "XLM-Roberta-Large-Vit-B-16Plus", "XLM-Roberta-Large-Vit-B-32", "XLM-Roberta-Large-Vit-L-14"}
)

# Triton model names (mt_photos_triton.families has the two entry models)
IMAGE = "clip_image"
PREPROCESS = "clip_image_preprocess"
VISUAL = "clip_visual"
TEXT = "clip_text"
TOKENIZE = "clip_tokenize"
TEXTUAL = "clip_textual"
PYTHON_MODELS = (PREPROCESS, TOKENIZE)
CLIP_MODELS = (PREPROCESS, VISUAL, IMAGE, TOKENIZE, TEXTUAL, TEXT)

MAX_BATCH = 16
# One image encoder with every core, and concurrent photos batched into one run: with a true batch axis
# (export/batch_layout.py) ViT-B/32 on 2 cores costs 53-54 ms/image alone and 46-48 ms/image in a batch of 2, where
# two single-thread encoders cost 92-106 ms of CPU per image and leave a lone photo (a user waiting) at half speed.
# Its pool threads do not spin between operators: with onnxruntime 1.31 spinning buys nothing on an idle machine
# (53.6 vs 54.3 ms a photo alone), and under load the spinning thread takes the core a photo is being decoded on.
# Measured over HTTP, two exports served side by side in alternating rounds (/clip/img, 2 cores, 8 rounds of 64
# photos): concurrency 4 without spinning 1.05-1.13x the images/s with spinning, every round (14.53 vs 13.35 img/s;
# the reference 12.36), concurrency 1 equal (11.72 vs 11.73). Two instances x 1 thread: 0.72x / 0.88x the reference.
VISUAL_INSTANCES = 1
VISUAL_SPINNING = "0"  # the `allow_spinning` parameter (mt_photos_triton/runtime/backends/onnxruntime)
# The text encoder keeps spinning during a run: nothing is decoded beside it, and the two ways measured the same
# (p50 at concurrency 1 and 4 within 1%), so it stays as /clip/txt was measured against the reference.
TEXTUAL_SPINNING = "1"
TEXTUAL_INSTANCES = 1  # the text tower is the big one (XLM-R's embeddings alone are 0.8 GB)
UNBATCHED = 1  # a batch axis of at most 1: the encoder file as immich ships it
QUEUE_DELAY_US = 0  # CPU encoders: batch what queued while busy, never wait for more
TOKENIZER_SIDECAR = "tokenizer.json"
MANIFEST = "export.json"
REASON_CHARS = 160
PROTOBUF_LIMIT = 2**31 - 1
SINGLE_TEXT_INPUTS = ("text",)
MCLIP_INPUTS = ("input_ids", "attention_mask")
VERIFY_QUERIES = ("a photo of a red cat", "红色的花", "🌅 sunset at the beach")
VERIFY_IMAGE_SIZES = ((640, 480), (300, 500), (257, 257))


@dataclass
class Contract:
    """What the model's own files say: export writes it into the configs; serving never guesses."""

    name: str
    image_size: int
    mean: list[float]
    std: list[float]
    context_length: int
    pad_token: str
    canonicalize: bool
    text_inputs: tuple[str, ...]
    dim: int = 0
    visual_batch: int = MAX_BATCH
    textual_batch: int = MAX_BATCH

    @property
    def mclip(self) -> bool:
        return self.text_inputs == MCLIP_INPUTS


# ------------------------------------------------------------------------------------------ sources


def resolve_hf_revision(repo_id: str, revision: str) -> str:
    """The commit a branch/tag points at now (so the manifest pins exactly what was downloaded)."""
    from huggingface_hub import HfApi

    try:
        return str(HfApi(endpoint=hf_endpoint()).model_info(repo_id, revision=revision).sha)
    except Exception as error:  # noqa: BLE001 - any hub failure means "cannot reach it"
        raise ExportError(
            f"could not resolve {repo_id}@{revision} on {hf_endpoint()} ({type(error).__name__}). "
            "Set HF_ENDPOINT to a mirror, or download the files yourself and pass --from DIR_OR_ZIP"
        ) from error


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "mt-photos-triton") / FAMILY


def fetch(name: str, source: str | None, work: Path) -> tuple[Path, dict[str, str]]:
    """The model directory and what to record about where it came from."""
    if source is not None and not source.startswith(("http://", "https://")):
        return unpack_local(Path(source).expanduser(), work), {"source": str(source)}
    if source is not None:
        raise ExportError("--from takes a local directory or zip for clip; for a mirror set HF_ENDPOINT instead")
    if name not in MODEL_DIMS:
        raise ExportError(f"unknown CLIP model {name!r}; immich offers: {', '.join(sorted(MODEL_DIMS))}")
    repo_id = f"{HF_ORGANISATION}/{name}"
    commit = resolve_hf_revision(repo_id, os.environ.get(HF_REVISION_ENV) or HF_DEFAULT_REVISION)
    target = cache_dir() / name / commit
    directory = download_hf_snapshot(repo_id, commit, HF_FILES, target)
    return directory, {"source": f"{hf_endpoint()}/{repo_id}", "revision": commit}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{path} is missing: not an immich CLIP model directory")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def read_contract(name: str, directory: Path) -> Contract:
    config = _read_json(directory / "config.json")
    preprocess = _read_json(directory / "visual" / "preprocess_cfg.json")
    tokenizer_config = _read_json(directory / "textual" / "tokenizer_config.json")
    if not (directory / "textual" / TOKENIZER_SIDECAR).is_file():
        raise ExportError(f"{directory / 'textual' / TOKENIZER_SIDECAR} is missing")
    size = preprocess["size"]
    text_cfg = config.get("text_cfg", {})
    tokenizer_kwargs = text_cfg.get("tokenizer_kwargs") or {}
    pad_token = tokenizer_config["pad_token"]
    if isinstance(pad_token, dict):  # some tokenizer_config files spell tokens out as AddedToken objects
        pad_token = pad_token["content"]
    return Contract(
        name=name,
        image_size=int(size[0] if isinstance(size, list) else size),
        mean=[float(v) for v in preprocess["mean"]],
        std=[float(v) for v in preprocess["std"]],
        context_length=int(text_cfg.get("context_length", 77)),
        pad_token=str(pad_token),
        canonicalize=tokenizer_kwargs.get("clean") == "canonicalize",
        text_inputs=SINGLE_TEXT_INPUTS,
    )


# ---------------------------------------------------------------------------------------- ONNX graphs


def _onnx_files(model_file: Path) -> list[Path]:
    """The graph and its external-data files (immich splits models over 2 GB)."""
    return [p for p in sorted(model_file.parent.iterdir()) if p.name.startswith(model_file.name)]


def _load(model_file: Path) -> Any:
    import onnx

    if not model_file.is_file():
        raise ExportError(f"{model_file} is missing")
    return onnx.load(str(model_file))


def _rename(model: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == old:
            value.name = new


def _graph_inputs(model: Any) -> list[Any]:
    initialisers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initialisers]


def _static_dims(value: Any) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


def name_visual_tensors(model: Any) -> None:
    """One input `image`, one output `embedding` (immich's names; other exports are renamed to them)."""
    inputs, outputs = _graph_inputs(model), list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"visual model: expected 1 input and 1 output, found {len(inputs)} and {len(outputs)}")
    _rename(model, inputs[0].name, "image")
    _rename(model, outputs[0].name, "embedding")


def name_textual_tensors(model: Any) -> tuple[str, ...]:
    """`text`, or M-CLIP's `input_ids` + `attention_mask`; the output `embedding`."""
    inputs, outputs = _graph_inputs(model), list(model.graph.output)
    if len(outputs) != 1:
        raise ExportError(f"textual model: expected 1 output, found {len(outputs)}")
    _rename(model, outputs[0].name, "embedding")
    names = tuple(i.name for i in inputs)
    if len(inputs) == 1:
        _rename(model, names[0], "text")
        return SINGLE_TEXT_INPUTS
    if sorted(names) == sorted(MCLIP_INPUTS):
        return MCLIP_INPUTS
    raise ExportError(f"textual model: inputs {names} are neither `text` nor `input_ids` + `attention_mask`")


def follow_batch_in_expands(model: Any) -> int:
    """Expand targets like [1, 1, width] (open_clip's class token `expand(batch, 1, -1)`, traced with the
    batch frozen to 1) take their first dim from the input's batch; returns how many were rewritten.

    Only Expands whose result is concatenated with batch data need it (broadcasting handles the rest), and
    only those are touched; export/batching.py (or export/batch_layout.py) then handles the Reshape targets.
    """
    from onnx import helper, numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    concatenated = {name for node in model.graph.node if node.op_type == "Concat" for name in node.input}
    batch = "batch_size__from_input"
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "Expand" or node.output[0] not in concatenated or node.input[1] not in constants:
            continue
        target = constants[node.input[1]]
        if target.ndim != 1 or target.size == 0 or target[0] != 1:
            continue
        rest = f"{node.output[0]}__shape_rest"
        model.graph.initializer.append(numpy_helper.from_array(target[1:].astype(np.int64), rest))
        shape = f"{node.output[0]}__shape"
        model.graph.node.insert(0, helper.make_node("Concat", [batch, rest], [shape], axis=0))
        node.input[1] = shape
        rewritten += 1
    if rewritten:
        first = _graph_inputs(model)[0].name
        index = f"{batch}__index"
        model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), index))
        model.graph.node.insert(0, helper.make_node("Gather", [f"{batch}__shape", index], [batch], axis=0))
        model.graph.node.insert(0, helper.make_node("Shape", [first], [f"{batch}__shape"]))
    return rewritten


def _referenced(graph: Any) -> set[str]:
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs] if attribute.HasField("g") or attribute.graphs else []:
                names |= _referenced(subgraph)
    return names


def drop_unused_initialisers(model: Any) -> None:
    """The batch-1 constants the rewrite replaced (onnxruntime warns about each one left behind)."""
    used = _referenced(model.graph)
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


SCAN_MIN_OPSET = 13  # Unsqueeze/Squeeze take their axes as an input from opset 13 on


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def wrap_in_scan(model: Any) -> Any:
    """The batch-1 graph as the body of a Scan over the batch: any batch in, each item run exactly as the
    shipped file runs it (no batched maths, but one encoder call per Triton batch). For graphs that fold the
    batch into other axes (torch's `nn.MultiheadAttention` traces reshape to [seq, batch*heads, head_dim]),
    where rewriting the constants cannot work."""
    import onnx
    from onnx import helper, numpy_helper

    if _opset(model) < SCAN_MIN_OPSET:
        raise ValueError(f"opset {_opset(model)} < {SCAN_MIN_OPSET}")
    inputs, outputs = _graph_inputs(model), list(model.graph.output)
    axes = "scan__axes0"
    renames = {v.name: f"{v.name}__one" for v in [*inputs, *outputs]}
    body_nodes, body_inputs, body_outputs = [], [], []
    for value in inputs:
        body_inputs.append(helper.make_tensor_value_info(
            f"{value.name}__item", value.type.tensor_type.elem_type, _static_dims(value)[1:]))
        body_nodes.append(helper.make_node("Unsqueeze", [f"{value.name}__item", axes], [renames[value.name]]))
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [renames.get(n, n) for n in node.input]
        copy.output[:] = [renames.get(n, n) for n in node.output]
        body_nodes.append(copy)
    for value in outputs:
        body_nodes.append(helper.make_node("Squeeze", [renames[value.name], axes], [f"{value.name}__item"]))
        body_outputs.append(helper.make_tensor_value_info(
            f"{value.name}__item", value.type.tensor_type.elem_type, _static_dims(value)[1:]))
    body = helper.make_graph(body_nodes, "per_item", body_inputs, body_outputs)
    scan = helper.make_node("Scan", [v.name for v in inputs], [v.name for v in outputs], body=body,
                            num_scan_inputs=len(inputs))
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    del wrapped.graph.node[:]
    del wrapped.graph.value_info[:]
    wrapped.graph.node.append(scan)
    wrapped.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), axes))
    for value in [*_graph_inputs(wrapped), *wrapped.graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = "batch"
    return wrapped


def make_batchable(model: Any, feeds: dict[str, NDArray[Any]], what: str) -> tuple[Any | None, str]:
    """The model with a free batch axis and a line saying how, or None when nothing holds.

    True batched maths first: the constant rewrite (batch-first graphs), then the layout rewrite (graphs that
    fold the batch into other axes, as torch's `nn.MultiheadAttention` traces); when neither's batched outputs
    equal batch-1 runs, the Scan wrap (exact per item, but items one after another). Each is proven on `feeds`
    (several items) against the shipped graph.
    """
    from export.batch_layout import free_folded_batch
    from export.batching import VERIFY_TOLERANCE, add_batch_axis, batchable, max_batch_difference

    # in place (no copy of a model that may weigh a gigabyte): at batch 1 the rewritten Expands compute
    # exactly what the constants said, so `model` stays the shipped graph's equal
    follow_batch_in_expands(model)
    failures = []
    for rewrite, how in ((add_batch_axis, "constants follow the batch"),
                         (free_folded_batch, "Reshape targets follow the batch through its folded layout")):
        try:
            batched, difference = batchable(model, feeds, rewrite=rewrite)
        except Exception as error:  # noqa: BLE001 - BatchRewriteError, or shape inference failing on the graph
            failures.append(_reason(error))
            continue
        drop_unused_initialisers(batched)
        return batched, f"{what}: batch axis added ({how}), batched vs batch-1 max abs diff {difference:.3g}"
    rewrite_failure = f"{failures[0]}; layout: {failures[1]}"
    try:
        wrapped = wrap_in_scan(model)
        difference = max_batch_difference(model, wrapped, feeds)
        if not difference <= VERIFY_TOLERANCE:
            raise ValueError(f"batched outputs differ from batch-1 runs by {difference:.3g}")
    except Exception as error:  # noqa: BLE001 - the wrap is refused or does not run
        return None, f"{what}: no batch axis ({rewrite_failure}; scan: {_reason(error)}); served with a batch of 1"
    return wrapped, (f"{what}: constants pin the batch ({rewrite_failure}); batch axis by a Scan over items, "
                     f"batched vs batch-1 max abs diff {difference:.3g}")


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:REASON_CHARS] if text else type(error).__name__


def output_dim(model: Any, feeds: dict[str, NDArray[Any]]) -> int:
    """The embedding size from the graph (run once when the graph does not state it)."""
    dims = _static_dims(next(o for o in model.graph.output if o.name == "embedding"))
    if dims and dims[-1] > 0:
        return dims[-1]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return int(session.run(["embedding"], {k: v[:1] for k, v in feeds.items()})[0].shape[-1])


# ------------------------------------------------------------------------------------ reference inputs


def verification_images(contract: Contract) -> NDArray[np.float32]:
    """A few generated photos through the transform: realistic encoder inputs for the batch check."""
    from PIL import Image

    from mt_photos_triton.pipelines.clip import ImageTransform

    transform = ImageTransform(contract.image_size, contract.mean, contract.std)
    rng = np.random.default_rng(0)
    arrays = []
    for width, height in VERIFY_IMAGE_SIZES:
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
        noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
        arrays.append(transform.from_image(Image.fromarray(noisy)))
    return np.stack(arrays)


def verification_tokens(contract: Contract, tokenizer_file: Path) -> dict[str, NDArray[np.int32]]:
    from mt_photos_triton.pipelines.clip import TextTokenizer

    tokenizer = TextTokenizer(tokenizer_file, contract.context_length, contract.pad_token, contract.canonicalize)
    ids, mask = tokenizer(list(VERIFY_QUERIES))
    return {"input_ids": ids, "attention_mask": mask} if contract.mclip else {"text": ids}


# --------------------------------------------------------------------------------------------- configs


LANGUAGE_INPUT = "language"  # optional: the query's Weblate language code, read by NLLB models only
NLLB_PREFIX = "nllb"  # immich textual.py `_load`: models named nllb* get the FLORES-200 language prefix


def reads_language(model: str) -> bool:
    return model.startswith(NLLB_PREFIX)


def _config(name: str, max_batch: int, **kwargs: Any) -> Any:
    from mt_photos_triton.repository import FAMILY_PARAMETER, ModelConfig

    config = ModelConfig(name=name, max_batch_size=max_batch, **kwargs)
    config.parameters[FAMILY_PARAMETER].string_value = FAMILY
    return config


def _tensor(collection: Any, name: str, data_type: str, dims: list[int]) -> None:
    from tritonclient.grpc import model_config_pb2

    collection.add(name=name, data_type=model_config_pb2.DataType.Value(data_type), dims=dims)


def _cpu_instances(config: Any, count: int) -> None:
    from tritonclient.grpc import model_config_pb2

    config.instance_group.add(count=count, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)


def build_configs(contract: Contract, cores: int) -> dict[str, Any]:
    """The six configs of a model: its contract written into tensor shapes and parameters; encoder thread
    pools sized for `cores` (the export machine's, by default)."""
    from mt_photos_triton.pipelines.clip import format_floats
    from mt_photos_triton.repository import REQUIRED_FILES_PARAMETER
    from export.configs import set_parameters

    size, length, dim = contract.image_size, contract.context_length, contract.dim
    image_batch = min(MAX_BATCH, contract.visual_batch)
    text_batch = min(MAX_BATCH, contract.textual_batch)

    preprocess = _config(PREPROCESS, MAX_BATCH, backend="python")
    _tensor(preprocess.input, "image_bytes", "TYPE_STRING", [1])
    _tensor(preprocess.output, "image", "TYPE_FP32", [3, size, size])
    preprocess.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    _cpu_instances(preprocess, 1)
    set_parameters(preprocess, {"size": size, "mean": format_floats(contract.mean), "std": format_floats(contract.std),
                                # images of one execution decoded in parallel (Pillow releases the GIL), one per core
                                "decode_threads": max(1, cores)})

    visual = _config(VISUAL, image_batch, backend="onnxruntime")
    _tensor(visual.input, "image", "TYPE_FP32", [3, size, size])
    _tensor(visual.output, "embedding", "TYPE_FP32", [dim])
    visual.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    _cpu_instances(visual, VISUAL_INSTANCES)
    set_parameters(visual, {"model_name": contract.name, "intra_op_thread_count": max(1, cores // VISUAL_INSTANCES),
                            "inter_op_thread_count": 1, "allow_spinning": VISUAL_SPINNING})

    image = _config(IMAGE, image_batch, platform="ensemble")
    _tensor(image.input, "image_bytes", "TYPE_STRING", [1])
    _tensor(image.output, "embedding", "TYPE_FP32", [dim])
    step = image.ensemble_scheduling.step.add(model_name=PREPROCESS, model_version=-1)
    step.input_map["image_bytes"] = "image_bytes"
    step.output_map["image"] = "preprocessed_image"
    step = image.ensemble_scheduling.step.add(model_name=VISUAL, model_version=-1)
    step.input_map["image"] = "preprocessed_image"
    step.output_map["embedding"] = "embedding"

    tokenize = _config(TOKENIZE, MAX_BATCH, backend="python")
    _tensor(tokenize.input, "query", "TYPE_STRING", [1])
    _tensor(tokenize.input, LANGUAGE_INPUT, "TYPE_STRING", [1])
    tokenize.input[-1].optional = True
    for name in contract.text_inputs:
        _tensor(tokenize.output, name, "TYPE_INT32", [length])
    tokenize.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    _cpu_instances(tokenize, 1)
    set_parameters(tokenize, {"tokenizer_file": TOKENIZER_SIDECAR, REQUIRED_FILES_PARAMETER: TOKENIZER_SIDECAR, "context_length": length,
                              "pad_token": contract.pad_token, "canonicalize": str(contract.canonicalize).lower(),
                              "outputs": ",".join(contract.text_inputs),
                              "language_prefix": str(reads_language(contract.name)).lower()})

    textual = _config(TEXTUAL, text_batch, backend="onnxruntime")
    for name in contract.text_inputs:
        _tensor(textual.input, name, "TYPE_INT32", [length])
    _tensor(textual.output, "embedding", "TYPE_FP32", [dim])
    textual.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    _cpu_instances(textual, TEXTUAL_INSTANCES)
    set_parameters(textual, {"model_name": contract.name, "intra_op_thread_count": max(1, cores),
                             "inter_op_thread_count": 1, "allow_spinning": TEXTUAL_SPINNING})

    text = _config(TEXT, text_batch, platform="ensemble")
    _tensor(text.input, "text", "TYPE_STRING", [1])
    _tensor(text.input, LANGUAGE_INPUT, "TYPE_STRING", [1])
    text.input[-1].optional = True
    _tensor(text.output, "embedding", "TYPE_FP32", [dim])
    step = text.ensemble_scheduling.step.add(model_name=TOKENIZE, model_version=-1)
    step.input_map["query"] = "text"
    step.input_map[LANGUAGE_INPUT] = LANGUAGE_INPUT
    for name in contract.text_inputs:
        step.output_map[name] = f"tokens_{name}"
    step = text.ensemble_scheduling.step.add(model_name=TEXTUAL, model_version=-1)
    for name in contract.text_inputs:
        step.input_map[name] = f"tokens_{name}"
    step.output_map["embedding"] = "embedding"
    return {PREPROCESS: preprocess, VISUAL: visual, IMAGE: image, TOKENIZE: tokenize, TEXTUAL: textual, TEXT: text}


# ---------------------------------------------------------------------------------------------- export


def _manifest_path(repository: Path) -> Path:
    return repository / VISUAL / MANIFEST


def _written_files(repository: Path) -> list[Path]:
    return [
        *_onnx_files(repository / VISUAL / "1" / "model.onnx"),
        *_onnx_files(repository / TEXTUAL / "1" / "model.onnx"),
        repository / TOKENIZE / "1" / TOKENIZER_SIDECAR,
    ]


def up_to_date(repository: Path, name: str) -> bool:
    """Everything of `name` is there with the recorded hashes (a re-run without --force does nothing)."""
    path = _manifest_path(repository)
    if not path.is_file():
        return False
    manifest = json.loads(path.read_text())
    if manifest.get("model") != name or manifest.get("exporter") != exporter_fingerprint():
        return False
    recorded = manifest.get("written", {})
    for relative, digest in recorded.items():
        file = repository / relative
        if not file.is_file() or sha256_file(file) != digest:
            return False
    return bool(recorded)


def exporter_fingerprint() -> str:
    from export import batch_layout, batching
    from mt_photos_triton.repository import templates

    python_models = [templates() / name / "1" / "model.py" for name in PYTHON_MODELS]
    sources = [Path(__file__), Path(batching.__file__), Path(batch_layout.__file__), *python_models]
    return code_fingerprint(*(path for path in sources if path.is_file()))


def _install_python_model(repository: Path, name: str) -> None:
    """model.py from this package's own repository tree, unless the target already holds that very file."""
    from mt_photos_triton.repository import templates

    target = repository / name / "1" / "model.py"
    source = templates() / name / "1" / "model.py"
    if not source.is_file():
        raise ExportError(f"{source} is missing: reinstall mt-photos-triton")
    if target.is_file() and target.read_bytes() == source.read_bytes():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def _save_onnx(model: Any, target_dir: Path) -> None:
    """model.onnx, with its weights in model.onnx.data when the graph is over protobuf's 2 GB limit."""
    import onnx

    target_dir.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save(model, str(target_dir / "model.onnx"))
    else:
        onnx.save(model, str(target_dir / "model.onnx"), save_as_external_data=True, location="model.onnx.data")


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    from export.configs import write_config

    repository = Path(repository)
    name = model or (Path(source).stem if source else DEFAULT_MODEL)
    result = ExportResult(family=FAMILY, model=name)
    if not force and up_to_date(repository, name):
        result.skipped = True
        return result

    with tempfile.TemporaryDirectory(prefix="clip-export-") as work:
        directory, origin = fetch(name, source, Path(work))
        contract = read_contract(name, directory)
        recorded = {
            str(p.relative_to(directory)): sha256_file(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        }

        stage = Path(work) / "stage"  # nothing reaches the repository before both encoders are proven
        visual_file = directory / "visual" / "model.onnx"
        visual = _load(visual_file)
        name_visual_tensors(visual)
        image_feeds = {"image": verification_images(contract)}
        contract.dim = output_dim(visual, image_feeds)
        visual_batched, line = make_batchable(visual, image_feeds, "visual")
        result.notes.append(line)
        contract.visual_batch = MAX_BATCH if visual_batched is not None else UNBATCHED
        # the renamed tensors must reach the file even when it is served as shipped
        _save_onnx(visual_batched or visual, stage / VISUAL)
        del visual, visual_batched  # the text tower can be large too (XLM-R's embeddings alone are 0.8 GB)

        textual_file = directory / "textual" / "model.onnx"
        textual = _load(textual_file)
        contract.text_inputs = name_textual_tensors(textual)
        tokenizer_file = directory / "textual" / TOKENIZER_SIDECAR
        text_feeds = verification_tokens(contract, tokenizer_file)
        text_dim = output_dim(textual, text_feeds)
        if text_dim != contract.dim:
            raise ExportError(f"visual ({contract.dim}) and textual ({text_dim}) embeddings differ in size")
        if name in MODEL_DIMS and MODEL_DIMS[name] != contract.dim:
            raise ExportError(f"{name} should give {MODEL_DIMS[name]}-d embeddings, its files give {contract.dim}")
        if name in MCLIP_MODELS and not contract.mclip:
            raise ExportError(f"{name} is an M-CLIP model but its text encoder takes {contract.text_inputs}")
        textual_batched, line = make_batchable(textual, text_feeds, "textual")
        result.notes.append(line)
        contract.textual_batch = MAX_BATCH if textual_batched is not None else UNBATCHED
        _save_onnx(textual_batched or textual, stage / TEXTUAL)
        del textual, textual_batched

        for model_name in (VISUAL, TEXTUAL):
            target = repository / model_name / "1"
            target.mkdir(parents=True, exist_ok=True)
            for old in target.glob("model.onnx*"):
                old.unlink()
            for file in (stage / model_name).iterdir():
                shutil.move(str(file), target / file.name)
        (repository / TOKENIZE / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(tokenizer_file, repository / TOKENIZE / "1" / TOKENIZER_SIDECAR)
        for python_model in PYTHON_MODELS:
            _install_python_model(repository, python_model)
        configs = build_configs(contract, os.cpu_count() or 1)
        for model_name, config in configs.items():
            write_config(repository / model_name, config)
            (repository / model_name / "1").mkdir(parents=True, exist_ok=True)
        check_exported(repository, contract, directory, image_feeds, text_feeds, result)

        manifest = {
            "model": name,
            "exporter": exporter_fingerprint(),
            **origin,
            "dim": contract.dim,
            "mclip": contract.mclip,
            "image_size": contract.image_size,
            "max_batch": {"visual": contract.visual_batch, "textual": contract.textual_batch},
            "source_sha256": recorded,
            "written": {str(p.relative_to(repository)): sha256_file(p) for p in _written_files(repository)},
        }
        _manifest_path(repository).write_text(json.dumps(manifest, indent=2))
    result.written = list(configs)
    result.notes.append(f"{contract.dim}-d embeddings, {contract.image_size}px images, "
                        f"{'M-CLIP (input_ids + attention_mask)' if contract.mclip else 'single text input'}")
    return result


def check_exported(
    repository: Path,
    contract: Contract,
    directory: Path,
    image_feeds: dict[str, NDArray[Any]],
    text_feeds: dict[str, NDArray[Any]],
    result: ExportResult,
) -> None:
    """Run each written encoder once on the reference inputs (all items in one run where it batches) and
    compare with the shipped file run item by item; the difference is reported and must be <= 1e-5."""
    import onnxruntime as ort

    from export.batching import VERIFY_TOLERANCE

    for what, written, shipped, feeds, batch in (
        ("visual", repository / VISUAL / "1" / "model.onnx", directory / "visual" / "model.onnx", image_feeds,
         contract.visual_batch),
        ("textual", repository / TEXTUAL / "1" / "model.onnx", directory / "textual" / "model.onnx", text_feeds,
         contract.textual_batch),
    ):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        ours = ort.InferenceSession(str(written), options, providers=["CPUExecutionProvider"])
        theirs = ort.InferenceSession(str(shipped), options, providers=["CPUExecutionProvider"])
        count = next(iter(feeds.values())).shape[0]
        if batch > 1:
            got = ours.run(["embedding"], dict(feeds))[0]
        else:
            got = np.concatenate([ours.run(["embedding"], {k: v[i : i + 1] for k, v in feeds.items()})[0]
                                  for i in range(count)])
        names = [i.name for i in theirs.get_inputs()]
        shipped_feeds = dict(zip(names, feeds.values())) if len(names) == 1 else feeds
        want = np.concatenate([theirs.run(None, {k: v[i : i + 1] for k, v in shipped_feeds.items()})[0]
                               for i in range(count)])
        difference = float(np.abs(got.reshape(want.shape) - want).max())
        if not difference <= VERIFY_TOLERANCE:
            raise ExportError(f"{what}: the written model differs from the shipped one by {difference:.3g}")
        result.notes.append(f"{what}: written file vs shipped file on reference inputs: max abs diff {difference:.3g}")
        log.info("clip %s checked: max abs diff %.3g", what, difference)
