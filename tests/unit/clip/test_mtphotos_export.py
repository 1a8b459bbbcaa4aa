"""`export clip --from DIR` on mt-photos-ai's files: recognised by them, written with the mt-photos-ai profile."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest

from export import clip as clip_export
from export.clip_mtphotos import MODEL_NAME
from export.common import ExportError
from mt_photos_triton.pipelines.clip_bert import BertTokenizer
from mt_photos_triton.reference.cnclip_standin import CnClipSpec, TowerSize, write_mtphotos_layout
from mt_photos_triton.repository import read_config

TINY = CnClipSpec(visual=TowerSize(16, 1, 2, "torch_mha"), text=TowerSize(16, 1, 2), embed_dim=512)
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "红", "色", "猫", "a", "photo", "of", "the", "red", "cat",
         "##s", "sun", "##set", "海", "边", "🌅", ",", "."]


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mt-photos-ai")
    vocab = root / "vocab-source.txt"
    vocab.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return write_mtphotos_layout(root / "utils", vocab, TINY)


def test_the_files_are_recognised_and_served_with_the_mt_photos_ai_profile(layout: Path, tmp_path: Path) -> None:
    result = clip_export.export(tmp_path, model=None, source=str(layout), force=False)
    assert result.model == MODEL_NAME
    preprocess = read_config(tmp_path / "clip_image_preprocess")
    parameters = {k: v.string_value for k, v in preprocess.parameters.items()}
    assert (parameters["decoder"], parameters["resize"], parameters["size"]) == ("opencv_bgr", "exact", "224")
    tokenize = read_config(tmp_path / "clip_tokenize")
    assert tokenize.parameters["tokenizer"].string_value == "bert_vocab"
    assert tokenize.parameters["context_length"].string_value == "52"
    assert (tmp_path / "clip_tokenize" / "1" / "vocab.txt").is_file()
    assert not (tmp_path / "clip_tokenize" / "1" / "tokenizer.json").exists()
    for entry in ("clip_image", "clip_text"):
        config = read_config(tmp_path / entry)
        assert config.parameters["number_format"].string_value == "fixed16"
        assert config.parameters["served_model"].string_value == MODEL_NAME
        assert config.output[0].dims == [512]  # from the model
    written = onnx.load(str(tmp_path / "clip_textual" / "1" / "model.onnx"))
    assert [i.name for i in written.graph.input] == ["text"] and written.graph.output[0].name == "embedding"
    assert written.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert written.graph.input[0].type.tensor_type.shape.dim[0].dim_value != 1  # a batch axis
    saved = clip_export.record.read(tmp_path, "clip")
    assert saved is not None and saved.details["profile"]["name"] == "mt-photos-ai"
    assert set(saved.source_sha256) == {"vit-b-16.img.fp32.onnx", "vit-b-16.txt.fp32.onnx", "vocab.txt"}


def test_export_auto_keeps_the_copy_when_the_variables_name_it(
    layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIP_VISUAL_MODEL_NAME", MODEL_NAME)
    monkeypatch.setenv("CLIP_TEXTUAL_MODEL_NAME", MODEL_NAME)
    with pytest.raises(ExportError, match="export clip --from DIR"):
        clip_export.export(tmp_path, model=None, source=None, force=False)  # nothing exported yet: says how
    clip_export.export(tmp_path, model=None, source=str(layout), force=False)
    again = clip_export.export(tmp_path, model=None, source=None, force=False)  # what `start` runs
    assert again.skipped and again.model == MODEL_NAME


def test_another_model_name_for_these_files_is_refused(layout: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="mt-photos-ai's files"):
        clip_export.export(tmp_path, model="ViT-B-32__openai", source=str(layout), force=False)


def test_a_file_without_the_official_interface_is_refused(layout: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in layout.iterdir():
        os.symlink(path, broken / path.name)
    model = onnx.load(str(layout / "vit-b-16.txt.fp32.onnx"))
    model.graph.output[0].name = "features"
    for node in model.graph.node:
        node.output[:] = ["features" if o == "unnorm_text_features" else o for o in node.output]
    (broken / "vit-b-16.txt.fp32.onnx").unlink()
    onnx.save(model, str(broken / "vit-b-16.txt.fp32.onnx"))
    with pytest.raises(ExportError, match="unnorm_text_features"):
        clip_export.export(tmp_path / "repo", model=None, source=str(broken), force=False)


def test_bert_framing(layout: Path) -> None:
    tokenizer = BertTokenizer(layout / "vocab.txt", 8)
    ids, mask = tokenizer(["Red cats, 红色猫!", "", "sunset " * 10])
    vocab = {w: i for i, w in enumerate(WORDS)}
    assert ids[0].tolist() == [2, vocab["red"], vocab["cat"], vocab["##s"], vocab[","], 5, 6, 3]
    assert mask[0].tolist() == [1] * 8
    assert ids[1].tolist() == [2, 3, 0, 0, 0, 0, 0, 0] and mask[1].sum() == 2
    assert ids[2].tolist() == [2, vocab["sun"], vocab["##set"], vocab["sun"], vocab["##set"], vocab["sun"],
                               vocab["##set"], 3]
    assert tokenizer(["!"])[0][0, 1] == 1  # a piece not in the vocabulary: [UNK]
