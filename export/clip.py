"""Export of the clip family: an immich CLIP model -> six Triton models.

    clip_image  (ensemble)  image_bytes -> clip_image_preprocess (python) -> clip_visual (onnxruntime) -> embedding
    clip_text   (ensemble)  text        -> clip_tokenize (python)         -> clip_textual (onnxruntime) -> embedding

The model is the one CLIP_VISUAL_MODEL_NAME / CLIP_TEXTUAL_MODEL_NAME name (they must agree), or `--model`.
Sources: Hugging Face `immich-app/<name>` (HF_ENDPOINT honoured, revision resolved to a commit and
recorded, every file's sha256 recorded) or `--from` a local directory / zip (or its URL) in the same layout,
taken as that model:
`config.json`, `visual/{model.onnx,preprocess_cfg.json}`, `textual/{model.onnx,tokenizer.json,
tokenizer_config.json}`; or `--from DIR` holding mt-photos-ai's `vit-b-16.img.fp32.onnx`,
`vit-b-16.txt.fp32.onnx` and `vocab.txt`, recognised by those files and served with the mt-photos-ai CLIP
profile (export/clip_mtphotos.py). Each encoder gets a verified batch axis (export/clip_graph.py); the configs,
with the model's CLIP profile, are export/clip_configs.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from export import clip_convert, clip_mtphotos, record
from export.clip_configs import (
    CLIP_MODELS, FAMILY, IMAGE, MAX_BATCH, PREPROCESS, TEXT, TEXTUAL, TOKENIZE, TOKENIZER_SIDECAR, UNBATCHED, VISUAL,
    Contract, build_configs,
)
from export.clip_graph import (
    MCLIP_INPUTS, SINGLE_TEXT_INPUTS, follow_batch_in_expands, make_batchable, name_textual_tensors,
    name_visual_tensors, output_dim,
)
from export.common import ExportError, ExportResult
from export.configs import serving_cores, write_config
from export.onnx_graph import load, save, session
from export.sources import download_hf_snapshot, hf_endpoint, open_source, resolve_hf_revision, sha256_file
from export.sources import cache_dir as family_cache_dir
from mt_photos_triton.families import FAMILIES, chosen_model
from mt_photos_triton.pipelines.clip_profile import describe

__all__ = [
    "CLIP_MODELS", "IMAGE", "MAX_BATCH", "MCLIP_INPUTS", "PREPROCESS", "SINGLE_TEXT_INPUTS", "TEXT", "TEXTUAL",
    "TOKENIZE", "VISUAL", "Contract", "build_configs", "export", "follow_batch_in_expands", "make_batchable",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = FAMILIES[FAMILY].default_model
HF_ORGANISATION = "immich-app"
# The revision export asks Hugging Face for (a branch, tag or commit); the commit it resolves to is recorded,
# and setting this variable to that commit reproduces an export exactly.
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

VERIFY_QUERIES = ("a photo of a red cat", "红色的花", "🌅 sunset at the beach")
VERIFY_IMAGE_SIZES = ((640, 480), (300, 500), (257, 257))


def cache_dir() -> Path:
    return family_cache_dir(FAMILY)


# ------------------------------------------------------------------------------------------ sources


def fetch(name: str, source: str | None, work: Path) -> tuple[Path, dict[str, str]]:
    """The model directory and what to record about where it came from."""
    if source is not None:
        return open_source(source, work), {"source": str(source)}
    if (repo := clip_convert.hf_repo(name)) is not None:  # a transformers checkpoint, converted in export()
        return from_hub(repo, clip_convert.HF_PATTERNS, cache_dir() / "hf" / repo.replace("/", "__"))
    if name not in MODEL_DIMS:
        raise ExportError(f"unknown CLIP model {name!r}; immich offers: {', '.join(sorted(MODEL_DIMS))}")
    return from_hub(f"{HF_ORGANISATION}/{name}", HF_FILES, cache_dir() / name)


def from_hub(repo_id: str, files: list[str], cache: Path) -> tuple[Path, dict[str, str]]:
    """`files` of a Hugging Face repository (HF_ENDPOINT honoured) at the commit CLIP_HF_REVISION resolves to,
    cached under `cache`/<commit>, and what to record about where they came from."""
    commit = resolve_hf_revision(repo_id, os.environ.get(HF_REVISION_ENV) or HF_DEFAULT_REVISION)
    directory = download_hf_snapshot(repo_id, commit, files, cache / commit)
    return directory, {"source": f"{hf_endpoint()}/{repo_id}", "revision": commit}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{path} is missing: not an immich CLIP model directory (nor mt-photos-ai's files: "
                          f"{', '.join(clip_mtphotos.FILES)})")
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


def layout_files(directory: Path) -> tuple[Path, Path, Path]:
    """The visual model, the textual model and the tokenizer file of either layout."""
    if clip_mtphotos.is_layout(directory):
        return tuple(directory / name for name in clip_mtphotos.FILES)  # type: ignore[return-value]
    textual = directory / "textual"
    return directory / "visual" / "model.onnx", textual / "model.onnx", textual / TOKENIZER_SIDECAR


def verification_images(contract: Contract) -> NDArray[np.float32]:
    """A few generated photos through the transform: realistic encoder inputs for the batch check."""
    from PIL import Image

    from mt_photos_triton.pipelines.clip import ImageTransform

    transform = ImageTransform(contract.image_size, contract.mean, contract.std, contract.profile)
    rng = np.random.default_rng(0)
    arrays = []
    for width, height in VERIFY_IMAGE_SIZES:
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
        noisy = np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)
        arrays.append(transform.from_image(Image.fromarray(noisy)))
    return np.stack(arrays)


def verification_tokens(contract: Contract, tokenizer_file: Path) -> dict[str, NDArray[np.integer[Any]]]:
    from mt_photos_triton.pipelines.clip import text_tokenizer

    tokenizer = text_tokenizer(contract.profile, tokenizer_file, contract.context_length, contract.pad_token,
                               contract.canonicalize)
    ids, mask = (array.astype(contract.profile.ids_dtype) for array in tokenizer(list(VERIFY_QUERIES)))
    return {"input_ids": ids, "attention_mask": mask} if contract.mclip else {"text": ids}


# ---------------------------------------------------------------------------------------------- export


def exporter_fingerprint() -> str:
    from export import batch_layout, batch_rules, batching, clip_configs, clip_graph

    modules = (Path(__file__), *(Path(m.__file__) for m in (batch_layout, batch_rules, batching, clip_configs, clip_graph,
                                                           clip_convert, clip_mtphotos)))
    return record.fingerprint(FAMILY, *modules)


def name_checks(name: str, contract: Contract) -> list[str]:
    """Where the files disagree with what immich says of `name`."""
    problems = []
    if name in MODEL_DIMS and MODEL_DIMS[name] != contract.dim:
        problems.append(f"{name} should give {MODEL_DIMS[name]}-d embeddings, its files give {contract.dim}")
    if name in MCLIP_MODELS and not contract.mclip:
        problems.append(f"{name} is an M-CLIP model but its text encoder takes {contract.text_inputs}")
    return problems


def local_only_source(repository: Path, model: str | None, source: str | None) -> tuple[str | None, str | None]:
    """(model, source) with mt-photos-ai's files taken into account: a directory in their layout is that model
    whatever the variables name (a different `--model` is refused); without `--from`, that model (which no hub
    offers) is the copy it was last exported from, so `export auto` keeps it up to date instead of failing."""
    if clip_mtphotos.local_layout(source):
        if model is not None and model != clip_mtphotos.MODEL_NAME:
            raise ExportError(f"{source} holds mt-photos-ai's files, which are {clip_mtphotos.MODEL_NAME}, not {model}")
        return clip_mtphotos.MODEL_NAME, source
    if source is None and (model or chosen_model(FAMILIES[FAMILY], os.environ)) == clip_mtphotos.MODEL_NAME:
        previous = record.read(repository, FAMILY)
        if previous is None or previous.model != clip_mtphotos.MODEL_NAME or not previous.requested_source:
            raise ExportError(f"{clip_mtphotos.MODEL_NAME} comes only from mt-photos-ai's files: run "
                              f"`export clip --from DIR` with {', '.join(clip_mtphotos.FILES)} in DIR")
        return model, previous.requested_source
    return model, source


def export(repository: Path, model: str | None, source: str | None, force: bool) -> ExportResult:
    """`model` (default: what CLIP_VISUAL_MODEL_NAME / CLIP_TEXTUAL_MODEL_NAME name) from Hugging Face, or
    `source` (`--from`) taken as that model; a `--from` directory in mt-photos-ai's layout is its own model."""
    repository = Path(repository)
    model, source = local_only_source(repository, model, source)
    exporter = exporter_fingerprint()
    result = record.start(repository, FAMILY, model, source, force, exporter)
    name, named = result.model, model is not None
    if result.skipped:
        return result

    with tempfile.TemporaryDirectory(prefix="clip-export-") as work:
        directory, origin = fetch(name, source, Path(work))
        recorded = {
            str(p.relative_to(directory)): sha256_file(p)
            for p in sorted(directory.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
        }
        profile = None
        if clip_convert.is_checkpoint(directory):  # a transformers checkpoint: optimum converts it to immich's layout
            directory, profile, lines = clip_convert.convert(directory, Path(work))
            result.notes.extend(lines)
        mtphotos = clip_mtphotos.is_layout(directory)
        contract = clip_mtphotos.read_contract(directory) if mtphotos else read_contract(name, directory)
        contract.profile = profile or contract.profile
        name = contract.name
        visual_file, textual_file, tokenizer_file = layout_files(directory)

        stage = Path(work) / "stage"  # nothing reaches the repository before both encoders are proven
        visual = load(visual_file)
        if mtphotos:
            clip_mtphotos.check_interface(visual, clip_mtphotos.VISUAL_INTERFACE, "visual")
        name_visual_tensors(visual)
        image_feeds = {"image": verification_images(contract)}
        contract.dim = output_dim(visual, image_feeds)
        visual_batched, line = make_batchable(visual, image_feeds, "visual")
        result.notes.append(line)
        contract.visual_batch = MAX_BATCH if visual_batched is not None else UNBATCHED
        # the renamed tensors must reach the file even when it is served as shipped
        save(visual_batched or visual, stage / VISUAL)
        del visual, visual_batched  # the text tower can be large too (XLM-R's embeddings alone are 0.8 GB)

        textual = load(textual_file)
        if mtphotos:
            clip_mtphotos.check_interface(textual, clip_mtphotos.TEXTUAL_INTERFACE, "textual")
        contract.text_inputs = name_textual_tensors(textual)
        text_feeds = verification_tokens(contract, tokenizer_file)
        text_dim = output_dim(textual, text_feeds)
        if text_dim != contract.dim:
            raise ExportError(f"visual ({contract.dim}) and textual ({text_dim}) embeddings differ in size")
        for problem in name_checks(name, contract):
            # files downloaded for `name`, or named by --model, must be that model; a local copy the variables
            # name is taken as it, and the user is told
            if named or source is None:
                raise ExportError(problem)
            log.warning("clip: %s: --from %s is taken as %s as the variables say", problem, source, name)
            result.notes.append(f"taken as {name} although {problem}")
        textual_batched, line = make_batchable(textual, text_feeds, "textual")
        result.notes.append(line)
        contract.textual_batch = MAX_BATCH if textual_batched is not None else UNBATCHED
        save(textual_batched or textual, stage / TEXTUAL)
        del textual, textual_batched

        for model_name in (VISUAL, TEXTUAL):
            target = repository / model_name / "1"
            target.mkdir(parents=True, exist_ok=True)
            for old in target.glob("model.onnx*"):
                old.unlink()
            for file in (stage / model_name).iterdir():
                shutil.move(str(file), target / file.name)
        sidecars = repository / TOKENIZE / "1"
        sidecars.mkdir(parents=True, exist_ok=True)
        for old in (TOKENIZER_SIDECAR, clip_mtphotos.VOCAB_FILE):  # the other layout's file, from an earlier export
            (sidecars / old).unlink(missing_ok=True)
        shutil.copy2(tokenizer_file, sidecars / contract.tokenizer_file)
        cores = serving_cores()  # thread pools for this machine's cores: export runs where it serves
        result.notes.append(f"decoding and encoder threads sized for {cores} cores (this machine)")
        configs = build_configs(contract, cores)
        for model_name, config in configs.items():
            write_config(repository / model_name, config)
        check_exported(repository, contract, (visual_file, textual_file), image_feeds, text_feeds, result)
        details = {
            "dim": contract.dim, "mclip": contract.mclip, "image_size": contract.image_size, "cores": cores,
            "profile": describe(contract.profile),
            "max_batch": {"visual": contract.visual_batch, "textual": contract.textual_batch},
            **({"revision": origin["revision"]} if "revision" in origin else {}),
        }
        record.write(repository, record.Record(FAMILY, name, source, origin["source"], recorded, details,
                                               exporter=exporter))
    result.written = list(configs)
    result.model = name
    result.notes.append(f"{contract.dim}-d embeddings, {contract.image_size}px images, "
                        f"text inputs {' + '.join(contract.text_inputs)}, "
                        f"CLIP profile {contract.profile.name}")
    return result


def check_exported(
    repository: Path,
    contract: Contract,
    shipped_files: tuple[Path, Path],
    image_feeds: dict[str, NDArray[Any]],
    text_feeds: dict[str, NDArray[Any]],
    result: ExportResult,
) -> None:
    """Run each written encoder once on the reference inputs (all items in one run where it batches) and
    compare with the shipped file run item by item; the difference is reported and must be <= 1e-5."""
    from export.batching import VERIFY_TOLERANCE

    for what, written, shipped, feeds, batch in (
        ("visual", repository / VISUAL / "1" / "model.onnx", shipped_files[0], image_feeds, contract.visual_batch),
        ("textual", repository / TEXTUAL / "1" / "model.onnx", shipped_files[1], text_feeds, contract.textual_batch),
    ):
        ours, theirs = session(written), session(shipped)
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
