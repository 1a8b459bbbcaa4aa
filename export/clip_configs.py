"""The six CLIP configs: a model's contract (what its own files say) written into tensor shapes and parameters,
with the instances, thread pools and queue policy they are served with. The contract's CLIP profile
(pipelines/clip_profile.py) goes into the parameters of the models that read it, as its differences from
immich's: an immich export's configs are what they were before profiles existed."""

from __future__ import annotations

from dataclasses import dataclass, field

from export.clip_graph import MCLIP_INPUTS
from export.configs import (
    ENTRY_INSTANCES, NICE_PARAMETER, add_step, add_tensor, bound_queue, instances, new_config, serves, set_parameters,
)
from mt_photos_triton.families import CLIP_IMAGE_MODEL, CLIP_TEXT_MODEL
from mt_photos_triton.pipelines.clip_profile import (
    ANSWER_FIELDS, IMAGE_FIELDS, IMMICH, TOKENIZER_FIELDS, ClipProfile, profile_parameters,
)
from mt_photos_triton.repository import REQUIRED_FILES_PARAMETER, ModelConfig

FAMILY = "clip"
IMAGE = CLIP_IMAGE_MODEL
PREPROCESS = "clip_image_preprocess"
VISUAL = "clip_visual"
TEXT = CLIP_TEXT_MODEL
TOKENIZE = "clip_tokenize"
TEXTUAL = "clip_textual"
CLIP_MODELS = (PREPROCESS, VISUAL, IMAGE, TOKENIZE, TEXTUAL, TEXT)
TOKENIZER_SIDECAR = "tokenizer.json"
LANGUAGE_INPUT = "language"  # optional: the query's Weblate language code, read by NLLB models only
NLLB_PREFIX = "nllb"

MAX_BATCH = 16
UNBATCHED = 1  # a batch axis of at most 1: the encoder file as immich ships it
QUEUE_DELAY_US = 0  # CPU encoders: batch what queued while busy, never wait for more
# One image encoder with every core, and concurrent photos batched into one run: with a true batch axis
# (export/batch_layout.py) ViT-B/32 on 2 cores costs 53-54 ms/image alone and 46-48 ms/image in a batch of 2, where
# two single-thread encoders cost 92-106 ms of CPU per image and leave a lone photo (a user waiting) at half speed.
# Its pool threads spin between operators, and the process runs at niceness 10 (the `allow_spinning` and `nice`
# parameters of mt_photos_triton/runtime/backends/onnxruntime). Spinning makes a lone photo's run faster (two servers
# side by side, clip_visual alone, alternating blocks: 46 vs 52 ms server compute; in-process 44 vs 56 ms with
# onnxruntime 1.32), but a spinning thread at the default priority takes the cores photos are decoded on under load;
# at niceness 10 the decoding, Triton and the adapter come first and the spinning only uses what is left. /clip/img
# over HTTP against the reference in-process, ratios of 6 alternating runs each (2 cores, 96 photos a round):
# concurrency 1: 0.90x without spinning, 0.99x spinning at niceness 10 (0.95x spinning at niceness 0, 2 runs);
# concurrency 4: 1.11x and 1.09x (1.01x spinning at niceness 0). On a NAS it also leaves MT Photos itself ahead
# of a photo being indexed.
VISUAL_INSTANCES = 1
VISUAL_SPINNING = "1"
VISUAL_NICE = 10
# The text encoder keeps spinning during a run: nothing is decoded beside it, and the two ways measured the same
# (p50 at concurrency 1 and 4 within 1%), so it stays as /clip/txt was measured against the reference.
TEXTUAL_SPINNING = "1"
TEXTUAL_INSTANCES = 1  # the text tower is the big one (XLM-R's embeddings alone are 0.8 GB)
# The two python steps take the requests first: a bounded rejecting queue, hence ENTRY_INSTANCES instances
# (export/configs.py)
PYTHON_STEP_INSTANCES = ENTRY_INSTANCES


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
    profile: ClipProfile = field(default=IMMICH)
    tokenizer_file: str = TOKENIZER_SIDECAR  # the tokenizer's file beside clip_tokenize's model.py

    @property
    def mclip(self) -> bool:
        return self.text_inputs == MCLIP_INPUTS


def reads_language(model: str) -> bool:
    """immich-ml textual.py `_load`: models named nllb* get the query's FLORES-200 language prefix."""
    return model.startswith(NLLB_PREFIX)


def _optional(config: ModelConfig, name: str) -> None:
    """An optional string input `name` (a request may leave it out)."""
    add_tensor(config.input, name, "TYPE_STRING", [1])
    config.input[-1].optional = True


def _python_step(name: str, max_batch: int) -> ModelConfig:
    config = new_config(name, FAMILY, max_batch, backend="python")
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    bound_queue(config)
    instances(config, PYTHON_STEP_INSTANCES)
    return config


def _encoder(
    name: str, max_batch: int, model: str, count: int, threads: int, spinning: str, nice: int = 0
) -> ModelConfig:
    config = new_config(name, FAMILY, max_batch, backend="onnxruntime")
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    instances(config, count)
    set_parameters(config, {"model_name": model, "intra_op_thread_count": threads, "inter_op_thread_count": 1,
                            "allow_spinning": spinning, **({NICE_PARAMETER: nice} if nice else {})})
    return config


def build_configs(contract: Contract, cores: int) -> dict[str, ModelConfig]:
    """The six configs of a model: decoding threads and encoder thread pools sized for `cores` (export passes the
    cores of the machine it runs on, where the models are served)."""
    from mt_photos_triton.pipelines.clip import format_floats

    size, length, dim = contract.image_size, contract.context_length, contract.dim
    image_batch = min(MAX_BATCH, contract.visual_batch)
    text_batch = min(MAX_BATCH, contract.textual_batch)

    preprocess = _python_step(PREPROCESS, MAX_BATCH)
    add_tensor(preprocess.input, "image_bytes", "TYPE_STRING", [1])
    add_tensor(preprocess.output, "image", "TYPE_FP32", [3, size, size])
    set_parameters(preprocess, {"size": size, "mean": format_floats(contract.mean), "std": format_floats(contract.std),
                                # images of one execution decoded in parallel (Pillow releases the GIL), one per core
                                "decode_threads": max(1, cores),
                                **profile_parameters(contract.profile, IMAGE_FIELDS)})
    visual = _encoder(VISUAL, image_batch, contract.name, VISUAL_INSTANCES, max(1, cores // VISUAL_INSTANCES),
                      VISUAL_SPINNING, VISUAL_NICE)
    add_tensor(visual.input, "image", "TYPE_FP32", [3, size, size])
    add_tensor(visual.output, "embedding", "TYPE_FP32", [dim])
    image = new_config(IMAGE, FAMILY, image_batch, platform="ensemble")
    add_tensor(image.input, "image_bytes", "TYPE_STRING", [1])
    add_tensor(image.output, "embedding", "TYPE_FP32", [dim])
    add_step(image, PREPROCESS, {"image_bytes": "image_bytes"}, {"image": "preprocessed_image"})
    add_step(image, VISUAL, {"image": "preprocessed_image"}, {"embedding": "embedding"})

    tokenize = _python_step(TOKENIZE, MAX_BATCH)
    add_tensor(tokenize.input, "query", "TYPE_STRING", [1])
    _optional(tokenize, LANGUAGE_INPUT)
    textual = _encoder(TEXTUAL, text_batch, contract.name, TEXTUAL_INSTANCES, max(1, cores), TEXTUAL_SPINNING)
    ids_type = contract.profile.triton_ids_type
    for name in contract.text_inputs:
        add_tensor(tokenize.output, name, ids_type, [length])
        add_tensor(textual.input, name, ids_type, [length])
    add_tensor(textual.output, "embedding", "TYPE_FP32", [dim])
    set_parameters(tokenize, {"tokenizer_file": contract.tokenizer_file,
                              REQUIRED_FILES_PARAMETER: contract.tokenizer_file,
                              "context_length": length, "pad_token": contract.pad_token,
                              "canonicalize": str(contract.canonicalize).lower(),
                              "outputs": ",".join(contract.text_inputs),
                              "language_prefix": str(reads_language(contract.name)).lower(),
                              **profile_parameters(contract.profile, TOKENIZER_FIELDS)})
    text = new_config(TEXT, FAMILY, text_batch, platform="ensemble")
    add_tensor(text.input, "text", "TYPE_STRING", [1])
    _optional(text, LANGUAGE_INPUT)
    add_tensor(text.output, "embedding", "TYPE_FP32", [dim])
    tokens = {name: f"tokens_{name}" for name in contract.text_inputs}
    add_step(text, TOKENIZE, {"query": "text", LANGUAGE_INPUT: LANGUAGE_INPUT}, tokens)
    add_step(text, TEXTUAL, tokens, {"embedding": "embedding"})

    for entry in (image, text):
        serves(entry, contract.name)
        # what the adapter reads: how /clip/* writes the numbers (and the profile's name)
        set_parameters(entry, profile_parameters(contract.profile, ANSWER_FIELDS, named=True))
    return {PREPROCESS: preprocess, VISUAL: visual, IMAGE: image, TOKENIZE: tokenize, TEXTUAL: textual, TEXT: text}
