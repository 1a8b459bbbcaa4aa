"""The CLIP profile: recorded by export as its differences from immich's, read back by the models and the adapter."""

from __future__ import annotations

import numpy as np
import pytest

from adapter.wire import clip_strings
from export import clip as clip_export
from mt_photos_triton.pipelines.clip_profile import (
    ANSWER_FIELDS, IMAGE_FIELDS, IMMICH, MT_PHOTOS_AI, PROFILE_PARAMETER, TOKENIZER_FIELDS, ClipProfile, ProfileError,
    profile_parameters, read_profile,
)


def test_the_immich_profile_records_nothing() -> None:
    for fields in (IMAGE_FIELDS, TOKENIZER_FIELDS, ANSWER_FIELDS):
        assert profile_parameters(IMMICH, fields, named=True) == {}
    assert read_profile({}) == IMMICH


def test_a_profile_round_trips_through_the_parameters_of_its_models() -> None:
    parameters = {}
    for fields in (IMAGE_FIELDS, TOKENIZER_FIELDS, ANSWER_FIELDS):
        parameters |= profile_parameters(MT_PHOTOS_AI, fields, named=True)
    assert parameters == {"decoder": "opencv_bgr", "resize": "exact", "tokenizer": "bert_vocab",
                          "number_format": "fixed16", PROFILE_PARAMETER: "mt-photos-ai"}
    read = read_profile(parameters)
    assert read.name == "mt-photos-ai"
    # ids_dtype is a tensor type in the configs, not a parameter: a model reads only its own fields
    assert {f: getattr(read, f) for f in (*IMAGE_FIELDS, *TOKENIZER_FIELDS, *ANSWER_FIELDS)} == {
        f: getattr(MT_PHOTOS_AI, f) for f in (*IMAGE_FIELDS, *TOKENIZER_FIELDS, *ANSWER_FIELDS)}


def test_a_value_no_code_serves_is_refused() -> None:
    with pytest.raises(ProfileError, match="decoder"):
        read_profile({"decoder": "imagemagick"})
    with pytest.raises(ProfileError, match="number_format"):
        ClipProfile("x", "pillow_rgb", "exact", "bicubic", "bert_vocab", "int64", "scientific")


def test_configs_carry_the_profile_where_it_is_read() -> None:
    contract = clip_export.Contract(
        name="m", image_size=224, mean=[0.5] * 3, std=[0.5] * 3, context_length=52, pad_token="[PAD]",
        canonicalize=False, text_inputs=("text",), dim=512, profile=MT_PHOTOS_AI, tokenizer_file="vocab.txt",
    )
    configs = clip_export.build_configs(contract, cores=2)
    params = {name: {k: v.string_value for k, v in config.parameters.items()} for name, config in configs.items()}
    assert params["clip_image_preprocess"]["decoder"] == "opencv_bgr"
    assert params["clip_image_preprocess"]["resize"] == "exact"
    assert "interpolation" not in params["clip_image_preprocess"]  # bicubic, as immich's
    assert params["clip_tokenize"]["tokenizer"] == "bert_vocab"
    assert params["clip_tokenize"]["tokenizer_file"] == params["clip_tokenize"]["required_files"] == "vocab.txt"
    for entry in ("clip_image", "clip_text"):
        assert params[entry]["number_format"] == "fixed16"
        assert params[entry][PROFILE_PARAMETER] == "mt-photos-ai"
    assert configs["clip_tokenize"].output[0].data_type == configs["clip_textual"].input[0].data_type
    assert "data_type: TYPE_INT64" in str(configs["clip_textual"].input[0])


def test_number_formats() -> None:
    values = np.array([1 / 3, -0.1, 1e-8, 0.0], np.float32)
    assert clip_strings(values) == clip_strings(values, "shortest") == [
        "0.3333333400000000", "-0.1000000000000000", "0.0000000100000000", "0.0000000000000000"]
    # mt-photos-ai: the float32's exact value ("{:.16f}".format of .tolist()'s floats)
    assert clip_strings(values, "fixed16") == [
        "0.3333333432674408", "-0.1000000014901161", "0.0000000099999999", "0.0000000000000000"]
    with pytest.raises(ValueError):
        clip_strings(values, "scientific")


def test_shortest_digits_equal_numpys_on_every_kind_of_float32() -> None:
    """orjson's float32 digits (what the reference writes, and what we now use) against numpy's dragon4, an
    implementation of its own: random bit patterns over every exponent, subnormals, signed zeros, the extremes."""
    from adapter.wire import shortest_floats

    bits = np.random.default_rng(7).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = np.concatenate([values[np.isfinite(values)], np.array(
        [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1e-7, 1e16],
        np.float32)])
    expected = [float(text) for text in values.astype(str)]
    assert shortest_floats(values) == expected
    assert [np.signbit(v) for v in shortest_floats(np.array([-0.0], np.float32))] == [True]
    # non-finite values read back as numpy writes them (orjson would write null)
    assert [str(v) for v in shortest_floats(np.array([np.nan, np.inf, 1.5], np.float32))] == ["nan", "inf", "1.5"]


def test_each_resize_and_interpolation_is_pillow_s() -> None:
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from PIL import Image

    from mt_photos_triton.pipelines.clip import ImageTransform, crop_centre, resize_shortest

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8))
    for resize, interpolation in (("shortest_crop", "bicubic"), ("shortest_crop", "bilinear"), ("exact", "bilinear")):
        profile = replace(IMMICH, resize=resize, interpolation=interpolation)
        transform = ImageTransform(32, [0.0] * 3, [1.0] * 3, profile)  # x / 255 alone
        filter_ = Image.Resampling.BILINEAR if interpolation == "bilinear" else Image.Resampling.BICUBIC
        if resize == "exact":
            want = np.asarray(image.resize((32, 32), resample=filter_))
        else:
            want = np.asarray(crop_centre(resize_shortest(image, 32, filter_), 32))
        with ThreadPoolExecutor(max_workers=1) as helper:
            for got in (transform.from_image(image), transform.from_image(image, helper)):
                assert np.array_equal(got.transpose(1, 2, 0), want.astype(np.float32) / 255.0), (resize, interpolation)
