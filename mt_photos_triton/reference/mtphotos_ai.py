"""mt-photos-ai's smart search, transcribed from its code: the reference of the `mt-photos-ai` CLIP profile.

Source: github.com/MT-Photos/mt-photos-ai at 64a1de7 ("README 更新"), folder onnx/ (the openvino/ and coreml/
variants carry the same clip.py maths, bert_tokenizer.py and vocab.txt): server.py (`/clip/img`, `/clip/txt`),
clip.py (image_processor, tokenize_numpy, process_image, process_txt), bert_tokenizer.py (FullTokenizer with
do_lower_case=True). Each step names its upstream lines. OpenCV, Pillow, numpy and onnxruntime only: nothing of
ours is imported or repeated, so a parity test compares two implementations.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

IMG_SIZE = 224  # clip.py:21
CONTEXT_LENGTH = 52  # clip.py:109
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)  # clip.py:24
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)  # clip.py:25


# ------------------------------------------------------------------------------------------------ image


def decode(data: bytes) -> NDArray[np.uint8] | None:
    """server.py:170-171: np.frombuffer, then cv2.imdecode with IMREAD_COLOR (a BGR array, or None)."""
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # type: ignore[no-any-return]


def single_image_transform(image: NDArray[np.uint8], image_size: int) -> NDArray[np.float32]:
    """clip.py:28-33: the array to a Pillow image as it is (BGR read as RGB), resized to size x size BICUBIC,
    back to an array via convert('RGB'), float32 / 255.0, (x - mean) / std, float32; HWC."""
    resized = Image.fromarray(np.uint8(image)).resize((image_size, image_size), Image.BICUBIC)
    pixels = np.array(Image.fromarray(np.uint8(resized)).convert("RGB"))
    pixels = np.array(pixels, dtype=np.float32) / 255.0
    pixels = (pixels - MEAN) / STD
    return pixels.astype(np.float32)  # type: ignore[no-any-return]


def image_processor(images: Sequence[NDArray[np.uint8]], image_size: int = IMG_SIZE) -> NDArray[np.float32]:
    """clip.py:36-43: each image transformed, stacked float32 NHWC, transposed to NCHW."""
    batch = np.array([single_image_transform(image, image_size) for image in images], dtype=np.float32)
    return np.transpose(batch, (0, 3, 1, 2))  # type: ignore[no-any-return]


def image_input(data: bytes) -> NDArray[np.float32]:
    """What clip.py:90-91 feeds the image model for an upload: [1, 3, 224, 224]."""
    image = decode(data)
    if image is None:
        raise ValueError("cv2.imdecode returned None")  # upstream fails in Image.fromarray and answers `msg`
    return image_processor([image], image_size=IMG_SIZE)[0:1, :, :, :]


# ------------------------------------------------------------------------------------------------- text


def load_vocab(vocab_file: Path) -> dict[str, int]:
    """bert_tokenizer.py:126-138: readline until EOF, each line stripped, id = line number (a repeated line
    keeps the later id)."""
    vocab: dict[str, int] = {}
    index = 0
    with open(vocab_file, encoding="utf-8") as reader:
        while True:
            token = reader.readline()
            if not token:
                break
            vocab[token.strip()] = index
            index += 1
    return vocab


def whitespace_tokenize(text: str) -> list[str]:
    """bert_tokenizer.py:157-163."""
    text = text.strip()
    return text.split() if text else []


def _is_whitespace(char: str) -> bool:
    """bert_tokenizer.py:399-408."""
    return char in (" ", "\t", "\n", "\r") or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """bert_tokenizer.py:411-420."""
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char: str) -> bool:
    """bert_tokenizer.py:423-436."""
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """bert_tokenizer.py:301-321."""
    return (
        (0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
        or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF)
        or (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F)
    )


def _clean_text(text: str) -> str:
    """bert_tokenizer.py:323-334."""
    output = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


def _tokenize_chinese_chars(text: str) -> str:
    """bert_tokenizer.py:288-299."""
    output = []
    for char in text:
        if _is_chinese_char(ord(char)):
            output += [" ", char, " "]
        else:
            output.append(char)
    return "".join(output)


def _run_strip_accents(text: str) -> str:
    """bert_tokenizer.py:257-266."""
    return "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")


def _run_split_on_punc(text: str) -> list[str]:
    """bert_tokenizer.py:268-286."""
    chars = list(text)
    i, start_new_word, output = 0, True, []
    while i < len(chars):
        char = chars[i]
        if _is_punctuation(char):
            output.append([char])
            start_new_word = True
        else:
            if start_new_word:
                output.append([])
            start_new_word = False
            output[-1].append(char)
        i += 1
    return ["".join(x) for x in output]


def basic_tokenize(text: str) -> list[str]:
    """bert_tokenizer.py:233-255 with do_lower_case=True (FullTokenizer's default, :169)."""
    text = _tokenize_chinese_chars(_clean_text(text))
    split_tokens = []
    for token in whitespace_tokenize(text):
        split_tokens.extend(_run_split_on_punc(_run_strip_accents(token.lower())))
    return whitespace_tokenize(" ".join(split_tokens))


def wordpiece_tokenize(text: str, vocab: dict[str, int], unk_token: str = "[UNK]", max_chars: int = 200) -> list[str]:
    """bert_tokenizer.py:340-396: greedy longest match first, "##" continuations, [UNK] for a word that fails."""
    output_tokens = []
    for token in whitespace_tokenize(text):
        chars = list(token)
        if len(chars) > max_chars:
            output_tokens.append(unk_token)
            continue
        is_bad, start, sub_tokens = False, 0, []
        while start < len(chars):
            end, cur_substr = len(chars), None
            while start < end:
                substr = "".join(chars[start:end])
                if start > 0:
                    substr = "##" + substr
                if substr in vocab:
                    cur_substr = substr
                    break
                end -= 1
            if cur_substr is None:
                is_bad = True
                break
            sub_tokens.append(cur_substr)
            start = end
        output_tokens.extend([unk_token] if is_bad else sub_tokens)
    return output_tokens


class FullTokenizer:
    """bert_tokenizer.py:166-187."""

    def __init__(self, vocab_file: Path) -> None:
        self.vocab = load_vocab(vocab_file)

    def tokenize(self, text: str) -> list[str]:
        return [sub for token in basic_tokenize(text) for sub in wordpiece_tokenize(token, self.vocab)]

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab[token] for token in tokens]


def tokenize_numpy(tokenizer: FullTokenizer, texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> NDArray[np.int64]:
    """clip.py:46-73: [CLS] + ids[:context_length - 2] + [SEP], written into int64 zeros."""
    all_tokens = [
        [tokenizer.vocab["[CLS]"]]
        + tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))[: context_length - 2]
        + [tokenizer.vocab["[SEP]"]]
        for text in texts
    ]
    result = np.zeros((len(all_tokens), context_length), dtype=np.int64)
    for i, tokens in enumerate(all_tokens):
        result[i, : len(tokens)] = np.array(tokens)
    return result


# --------------------------------------------------------------------------------------- models, answers


class Service:
    """clip.py:76-111 and server.py:165-183 over one directory holding the two ONNX files and vocab.txt."""

    def __init__(self, directory: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.image_model = onnxruntime.InferenceSession(
            str(directory / "vit-b-16.img.fp32.onnx"), options, providers=["CPUExecutionProvider"])
        self.text_model = onnxruntime.InferenceSession(
            str(directory / "vit-b-16.txt.fp32.onnx"), options, providers=["CPUExecutionProvider"])
        self.tokenizer = FullTokenizer(directory / "vocab.txt")

    def image_features(self, data: bytes) -> list[float]:
        """clip.py:89-93: the run's first row, `.tolist()` (Python floats)."""
        return self.image_model.run(["unnorm_image_features"], {"image": image_input(data)})[0].tolist()[0]  # type: ignore[no-any-return]

    def text_features(self, text: str) -> list[float]:
        """clip.py:108-111."""
        tokens = tokenize_numpy(self.tokenizer, [text], CONTEXT_LENGTH)
        return self.text_model.run(["unnorm_text_features"], {"text": tokens})[0].tolist()[0]  # type: ignore[no-any-return]

    def clip_img(self, data: bytes) -> dict[str, Any]:
        """server.py:173: `{'result': ["{:.16f}".format(vec) for vec in result]}`."""
        return {"result": [f"{vec:.16f}" for vec in self.image_features(data)]}

    def clip_txt(self, text: str) -> dict[str, Any]:
        """server.py:183."""
        return {"result": [f"{vec:.16f}" for vec in self.text_features(text)]}
