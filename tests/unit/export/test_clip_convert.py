"""export clip of a transformers checkpoint (export/clip_convert.py): tiny random-initialised CLIP, Chinese-CLIP
and SigLIP checkpoints built from transformers configs, exported into a repository, then compared with
transformers itself: the written encoders against the model's torch embeddings (L2-normalised), our image
transform against the checkpoint's image processor, our tokeniser against the checkpoint's tokenizer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from export.clip import export
from export.clip_configs import PREPROCESS, TEXTUAL, TOKENIZE, VISUAL
from export.common import ExportError
from export.onnx_graph import session
from mt_photos_triton.pipelines.clip import ImageTransform, TextTokenizer, hf_shortest_side_size, shortest_side_size
from mt_photos_triton.pipelines.clip_profile import read_profile
from mt_photos_triton.repository import read_config
from tests.unit.export.clip_checkpoints import ARCHITECTURES, DIMS, IMAGE_SIZE, as_processor_config, build

pytest.importorskip("optimum.exporters.onnx")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

EMBEDDING_TOLERANCE = 1e-5
PIXEL_TOLERANCE = 1e-6
QUERIES = ["a photo of a red cat", "红色的花", "sunset at the beach", "the dog"]
PHOTO_SIZES = ((64, 48), (40, 71), (33, 33), (103, 111))  # landscape, portrait, square, near-square
# at 224 px transformers makes this photo 224 x 1952 where immich's rounding makes it 224 x 1951
ROUNDED_APART = (21, 183)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def exported(request, tmp_path_factory):
    kind = request.param
    base = tmp_path_factory.mktemp(kind)
    checkpoint = build(kind, base / "checkpoint")
    repository = base / "repository"
    result = export(repository, model=f"tiny-{kind}", source=str(checkpoint), force=True)
    return kind, checkpoint, repository, result


def _parameters(model_dir: Path) -> dict[str, str]:
    return {key: value.string_value for key, value in read_config(model_dir).parameters.items()}


def _photo(width: int, height: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _torch_model(kind: str, checkpoint: Path):
    return transformers.AutoModel.from_pretrained(str(checkpoint)).eval()


def _normalised(tensor) -> np.ndarray:
    values = tensor.detach().numpy()
    return values / np.linalg.norm(values, axis=-1, keepdims=True)


@pytest.mark.parametrize("batch", [1, 4])
def test_image_embeddings_equal_transformers(exported, batch):
    kind, checkpoint, repository, _ = exported
    pixels = np.random.default_rng(batch).normal(0, 1, (batch, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    got = session(repository / VISUAL / "1" / "model.onnx").run(["embedding"], {"image": pixels})[0]
    with torch.no_grad():
        want = _normalised(_torch_model(kind, checkpoint).get_image_features(pixel_values=torch.from_numpy(pixels)))
    assert got.shape == (batch, DIMS[kind])
    assert float(np.abs(got - want).max()) <= EMBEDDING_TOLERANCE


@pytest.mark.parametrize("batch", [1, 4])
def test_text_embeddings_equal_transformers(exported, batch):
    kind, checkpoint, repository, _ = exported
    parameters = _parameters(repository / TOKENIZE)
    tokenizer = TextTokenizer(repository / TOKENIZE / "1" / "tokenizer.json", int(parameters["context_length"]),
                              parameters["pad_token"], parameters["canonicalize"] == "true")
    ids, mask = tokenizer(QUERIES[:batch])
    names = parameters["outputs"].split(",")
    feeds = {name: ids if name != "attention_mask" else mask for name in names}
    got = session(repository / TEXTUAL / "1" / "model.onnx").run(["embedding"], feeds)[0]
    model = _torch_model(kind, checkpoint)
    kwargs = {"input_ids": torch.from_numpy(ids.astype(np.int64))}
    if "attention_mask" in names:
        kwargs["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
    # the model's forward, whose text_embeds are what its similarity uses (transformers 4.57's chinese_clip
    # get_text_features reads a pooler output its text model does not have: forward takes the [CLS] state)
    pixels = torch.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE))
    with torch.no_grad():
        want = _normalised(model(**kwargs, pixel_values=pixels).text_embeds)
    assert got.shape == (batch, DIMS[kind])
    assert float(np.abs(got - want).max()) <= EMBEDDING_TOLERANCE


def test_preprocessing_equals_the_image_processor(exported):
    kind, checkpoint, repository, _ = exported
    parameters = _parameters(repository / PREPROCESS)
    ours = ImageTransform(int(parameters["size"]), [float(v) for v in parameters["mean"].split(",")],
                          [float(v) for v in parameters["std"].split(",")], read_profile(parameters))
    processor = transformers.AutoImageProcessor.from_pretrained(str(checkpoint), use_fast=False)
    for seed, (width, height) in enumerate(PHOTO_SIZES):
        photo = _photo(width, height, seed)
        want = processor(images=photo, return_tensors="np")["pixel_values"][0]
        got = ours.from_image(photo)
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= PIXEL_TOLERANCE, (kind, width, height)


def test_token_ids_equal_the_checkpoints_tokenizer(exported):
    kind, checkpoint, repository, _ = exported
    parameters = _parameters(repository / TOKENIZE)
    length = int(parameters["context_length"])
    ours = TextTokenizer(repository / TOKENIZE / "1" / "tokenizer.json", length, parameters["pad_token"],
                         parameters["canonicalize"] == "true")
    theirs = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    ids, mask = ours(QUERIES)
    want = theirs(QUERIES, padding="max_length", max_length=length, truncation=True)
    assert ids.tolist() == want["input_ids"]
    assert mask.tolist() == want["attention_mask"]


def test_records_the_converted_model(exported):
    kind, _, repository, result = exported
    record = json.loads((repository / "clip_image" / "export.json").read_text())
    assert record["model"] == f"tiny-{kind}"
    assert record["details"]["dim"] == DIMS[kind]
    assert record["details"]["profile"]["name"] == "transformers"
    assert {"config.json", "model.safetensors"} <= set(record["source_sha256"])  # the checkpoint, not the conversion
    assert any("converted from a transformers" in note for note in result.notes)


def test_processor_config_of_newer_transformers_converts_alike(tmp_path):
    checkpoint = build("clip", tmp_path / "checkpoint")
    as_processor_config(checkpoint)
    export(tmp_path / "repository", model="tiny-clip", source=str(checkpoint), force=True)
    parameters = _parameters(tmp_path / "repository" / PREPROCESS)
    assert (parameters["size"], parameters["resize"], parameters.get("interpolation", "bicubic")) == (
        str(IMAGE_SIZE), "hf_shortest_crop", "bicubic")


def test_longer_side_rounds_as_transformers_does():
    from transformers.image_transforms import get_resize_output_image_size

    for width, height in ((103, 111), (224, 448), (300, 700), (701, 299), ROUNDED_APART):
        want_height, want_width = get_resize_output_image_size(
            np.zeros((height, width, 3), np.uint8), 224, default_to_square=False, input_data_format="channels_last")
        assert hf_shortest_side_size(width, height, 224) == (want_width, want_height)
    assert hf_shortest_side_size(*ROUNDED_APART, 224) != shortest_side_size(*ROUNDED_APART, 224)


def test_hf_shortest_crop_equals_clips_image_processor_where_the_roundings_differ():
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from mt_photos_triton.pipelines.clip_profile import IMMICH

    processor = transformers.CLIPImageProcessor()  # shortest edge 224, centre crop 224, bicubic
    profile = replace(IMMICH, name="transformers", resize="hf_shortest_crop")
    ours = ImageTransform(224, processor.image_mean, processor.image_std, profile)
    photo = _photo(*ROUNDED_APART, seed=5)
    want = processor(images=photo, return_tensors="np")["pixel_values"][0]
    with ThreadPoolExecutor(max_workers=1) as helper:
        for got in (ours.from_image(photo), ours.from_image(photo, helper)):  # both resize paths
            assert float(np.abs(got - want).max()) <= PIXEL_TOLERANCE


def test_refuses_without_the_convert_extra(tmp_path, monkeypatch):
    checkpoint = build("clip", tmp_path / "checkpoint")
    monkeypatch.setitem(sys.modules, "optimum.exporters.onnx", None)  # import fails as when it is not installed
    with pytest.raises(ExportError, match=r"pip install 'mt-photos-triton\[convert\]'"):
        export(tmp_path / "repository", model="tiny-clip", source=str(checkpoint), force=True)


def test_refuses_a_model_type_it_cannot_split(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ExportError, match="not a two-tower CLIP"):
        export(tmp_path / "repository", model="tiny", source=str(checkpoint), force=True)


class FakeHub:
    """huggingface_hub's two calls export makes, answering from a local checkpoint; records what was asked."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint, self.asked = checkpoint, []

    def api(self, endpoint: str):
        hub = self

        class Api:
            def model_info(self, repo_id: str, revision: str):
                hub.asked.append(("model_info", endpoint, repo_id, revision))
                return type("Info", (), {"sha": hub.COMMIT})()

        return Api()

    def snapshot_download(self, repo_id, revision, allow_patterns, local_dir, endpoint):
        import fnmatch
        import shutil

        self.asked.append(("snapshot_download", endpoint, repo_id, revision))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for file in self.checkpoint.iterdir():
            if any(fnmatch.fnmatch(file.name, pattern) for pattern in allow_patterns):
                shutil.copy2(file, Path(local_dir) / file.name)
        return str(local_dir)


def test_hf_model_is_downloaded_from_hf_endpoint_and_converted(tmp_path, monkeypatch):
    import huggingface_hub

    hub = FakeHub(build("siglip", tmp_path / "checkpoint"))
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda endpoint: hub.api(endpoint))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    monkeypatch.setenv("MT_PHOTOS_CACHE", str(tmp_path / "cache"))
    result = export(tmp_path / "repository", model="hf:tiny-org/tiny-siglip", source=None, force=True)
    assert hub.asked == [
        ("model_info", "https://hf-mirror.example", "tiny-org/tiny-siglip", "main"),
        ("snapshot_download", "https://hf-mirror.example", "tiny-org/tiny-siglip", FakeHub.COMMIT),
    ]
    record = json.loads((tmp_path / "repository" / "clip_image" / "export.json").read_text())
    assert record["model"] == "hf:tiny-org/tiny-siglip" == result.model
    assert record["source"] == "https://hf-mirror.example/tiny-org/tiny-siglip"
    assert record["details"]["revision"] == FakeHub.COMMIT and record["details"]["dim"] == DIMS["siglip"]
    assert _parameters(tmp_path / "repository" / VISUAL)["model_name"] == "hf:tiny-org/tiny-siglip"


def test_hf_model_name_needs_org_and_name(tmp_path):
    with pytest.raises(ExportError, match="hf:<org>/<name>"):
        export(tmp_path / "repository", model="hf:just-a-name", source=None, force=True)
