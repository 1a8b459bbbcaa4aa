"""Tiny random-initialised transformers checkpoints of the architectures export/clip_convert.py converts, each
saved with `save_pretrained` as transformers would: weights, config, tokenizer, image-processor config.

CLIP ships its byte-level BPE vocab (vocab.json, merges.txt) and tokenizer.json; Chinese-CLIP only its BERT
vocab.txt, as OFA-Sys's checkpoints do (the converter has transformers convert it); SigLIP a Gemma-style
tokenizer.json, as the SigLIP 2 checkpoints (model_type `siglip`) do, and bilinear resizing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ARCHITECTURES = ("clip", "chinese_clip", "siglip")
IMAGE_SIZE = 32
PATCH = 8
LETTERS = "abcdefghijklmnopqrstuvwxyz"
HANZI = "红色蓝花猫狗天海日落"
DIMS = {"clip": 24, "chinese_clip": 20, "siglip": 40}  # each embedding size (not immich's 512)
TOWER = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
CORPUS = ["a photo of a red cat", "a blue flower", "sunset at the beach", "the dog in the sea", "red and blue"]


def _vision(hidden: int) -> dict[str, Any]:
    return dict(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=hidden, **TOWER)


def _clip(target: Path) -> None:
    import transformers

    vocab: dict[str, int] = {}
    for token in [*LETTERS, *(f"{c}</w>" for c in LETTERS)]:
        vocab[token] = len(vocab)
    merges = ["r e", "re d</w>", "c a", "ca t</w>", "p h", "o t"]
    for merge in merges:
        vocab[merge.replace(" ", "")] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)  # the highest id, as in openai's vocab (legacy pooling takes the argmax)
    (target / "vocab.json").write_text(json.dumps(vocab))
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = transformers.CLIPTokenizerFast(vocab_file=str(target / "vocab.json"),
                                               merges_file=str(target / "merges.txt"))
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, max_position_embeddings=77, **TOWER,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=_vision(32), projection_dim=DIMS["clip"],
    )
    transformers.CLIPModel(config).eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    transformers.CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                    crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(target)


def _chinese_clip(target: Path) -> None:
    import transformers

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *(f"##{c}" for c in LETTERS), *HANZI,
              "red", "blue", "photo", "cat", "the"]
    (target / "vocab.txt").write_text("\n".join(pieces) + "\n")
    tokenizer = transformers.BertTokenizer(vocab_file=str(target / "vocab.txt"))
    config = transformers.ChineseCLIPConfig(
        text_config=dict(vocab_size=len(pieces), hidden_size=32, max_position_embeddings=64, **TOWER),
        vision_config=_vision(32), projection_dim=DIMS["chinese_clip"],
    )
    transformers.ChineseCLIPModel(config).eval().save_pretrained(target)
    tokenizer.save_pretrained(target)  # vocab.txt only: no tokenizer.json
    (target / "tokenizer.json").unlink(missing_ok=True)
    transformers.ChineseCLIPImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                           do_center_crop=False).save_pretrained(target)


def _siglip(target: Path) -> None:
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    backend = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=80, special_tokens=specials))
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", backend.token_to_id("<bos>"))])
    tokenizer = transformers.GemmaTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                                bos_token="<bos>", unk_token="<unk>",
                                                padding_side="right")  # as clip_tokenize pads
    dim = DIMS["siglip"]
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=backend.get_vocab_size(), hidden_size=dim, max_position_embeddings=16, **TOWER,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=_vision(dim),
    )
    transformers.SiglipModel(config).eval().save_pretrained(target)
    tokenizer.save_pretrained(target)
    transformers.SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                      resample=2).save_pretrained(target)


BUILDERS = {"clip": _clip, "chinese_clip": _chinese_clip, "siglip": _siglip}


def build(kind: str, target: Path, seed: int = 0) -> Path:
    """A tiny `kind` checkpoint saved into `target`."""
    import torch

    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    BUILDERS[kind](target)
    return target


def as_processor_config(directory: Path) -> None:
    """The checkpoint as newer transformers save it: the image processor inside processor_config.json."""
    old = directory / "preprocessor_config.json"
    (directory / "processor_config.json").write_text(json.dumps({"image_processor": json.loads(old.read_text())}))
    old.unlink()
