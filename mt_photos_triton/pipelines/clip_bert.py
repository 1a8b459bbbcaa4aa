"""The BERT tokeniser of Chinese-CLIP (profile tokenizer `bert_vocab`): query strings -> token ids.

The algorithm of Google's BERT `FullTokenizer` as Chinese-CLIP ships it (cn_clip/clip/bert_tokenizer.py) and
mt-photos-ai copies it (onnx/bert_tokenizer.py), with `do_lower_case=True`; then Chinese-CLIP's framing
(mt-photos-ai onnx/clip.py:46-73 `tokenize_numpy`, cn_clip/clip/utils.py `tokenize`): `[CLS]`, the first
`context_length - 2` pieces, `[SEP]`, zeros up to `context_length`. No cleaning of ours runs before it (immich's
whitespace folding would merge words a control character separates differently).

Written in Python on purpose: the ids must equal upstream's for every string, and upstream's character classes
are Python's `unicodedata` ones. Hugging Face's BertNormalizer differs on a few classes (it also drops private-use
and unassigned characters, and its CJK ranges skip U+2B820-U+2B91F); docs/compatibility.md has the measurement.
A query is a few dozen characters, so the cost is some microseconds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

CLS, SEP, UNK = "[CLS]", "[SEP]", "[UNK]"
PAD_ID = 0  # onnx/clip.py:67: the ids are written into np.zeros
CONTINUATION = "##"
MAX_WORD_CHARS = 200  # bert_tokenizer.py:340: a longer word is one [UNK]
# bert_tokenizer.py:311-318 `_is_chinese_char`: the CJK blocks that get spaces around each character
CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)
_KEPT_CONTROLS = "\t\n\r"  # bert_tokenizer.py:401-403, 415: whitespace, not control characters


def load_vocab(path: Path) -> dict[str, int]:
    """Line n (universal newlines, stripped) has id n; a repeated line keeps its last id (bert_tokenizer.py:126-138)."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as lines:
        for index, line in enumerate(lines):
            vocab[line.strip()] = index
    return vocab


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def _is_punctuation(char: str) -> bool:
    """ASCII non-alphanumerics and every Unicode P* category (bert_tokenizer.py:423-436)."""
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _cleaned(text: str) -> str:
    """NUL, U+FFFD and Cc/Cf characters dropped (tab, LF, CR kept), whitespace (those three, space, Zs) made a
    space, spaces put around CJK characters (bert_tokenizer.py:323-334, 288-299)."""
    out = []
    for char in text:
        if char in _KEPT_CONTROLS or char == " " or unicodedata.category(char) == "Zs":
            out.append(" ")
        elif char == "\x00" or char == "\ufffd" or unicodedata.category(char) in ("Cc", "Cf"):
            continue
        elif _is_cjk(char):
            out.append(f" {char} ")
        else:
            out.append(char)
    return "".join(out)


def _without_accents(word: str) -> str:
    """NFD, then no Mn (combining) characters (bert_tokenizer.py:257-266)."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def _split_punctuation(word: str) -> list[str]:
    """Each punctuation character its own piece, the runs between them kept (bert_tokenizer.py:268-286)."""
    pieces: list[str] = []
    run = ""
    for char in word:
        if _is_punctuation(char):
            if run:
                pieces.append(run)
                run = ""
            pieces.append(char)
        else:
            run += char
    if run:
        pieces.append(run)
    return pieces


def basic_words(text: str) -> list[str]:
    """BasicTokenizer.tokenize with lower casing (bert_tokenizer.py:233-255)."""
    words: list[str] = []
    for word in _cleaned(text).split():
        words.extend(_split_punctuation(_without_accents(word.lower())))
    return " ".join(words).split()


class BertTokenizer:
    """Strings -> (ids, attention_mask), int32 [batch, context_length]: Chinese-CLIP's framing of the
    FullTokenizer's pieces. The mask marks the framed tokens (the text tower derives its own from the pad id)."""

    def __init__(self, vocab_file: Path, context_length: int) -> None:
        self.vocab = load_vocab(vocab_file)
        missing = [token for token in (CLS, SEP, UNK) if token not in self.vocab]
        if missing:
            raise ValueError(f"{vocab_file} has no {', '.join(missing)}: not a BERT vocabulary")
        self.context_length = context_length
        self.cls, self.sep, self.unk = self.vocab[CLS], self.vocab[SEP], self.vocab[UNK]

    def word_pieces(self, word: str) -> list[int]:
        """Greedy longest match, continuations prefixed `##`; a word with no match, or too long, is one [UNK]
        (bert_tokenizer.py:345-396)."""
        if len(word) > MAX_WORD_CHARS:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    start = end
                    break
            else:
                return [self.unk]
        return ids

    def ids(self, text: str) -> list[int]:
        pieces = [i for word in basic_words(text) for i in self.word_pieces(word)]
        return [self.cls, *pieces[: self.context_length - 2], self.sep]

    def __call__(
        self, texts: Sequence[str], languages: Sequence[str | None] | None = None
    ) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """`languages` are ignored (Chinese-CLIP takes no language prefix)."""
        ids = np.full((len(texts), self.context_length), PAD_ID, dtype=np.int32)
        mask = np.zeros((len(texts), self.context_length), dtype=np.int32)
        for row, text in enumerate(texts):
            framed = self.ids(text)
            ids[row, : len(framed)] = framed
            mask[row, : len(framed)] = 1
        return ids, mask
