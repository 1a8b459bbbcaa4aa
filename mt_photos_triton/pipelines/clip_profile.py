"""CLIP profiles: how a CLIP model's service turns uploads into tensors and vectors into strings.

A profile names the procedures of one upstream service; the model's own numbers (image size, mean and std,
context length, pad token) stay in export's Contract. Export records the profile in the configs it writes,
serving reads it back from them; nothing is guessed at run time.

Fields, and the config that carries each as a parameter of the same name:

- `decoder` (clip_image_preprocess): how the upload becomes pixels.
  `pillow_rgb`: Pillow decode, `convert("RGB")`, no EXIF transpose (immich machine-learning, mt-photos-ml);
  `opencv_bgr`: `cv2.imdecode(..., IMREAD_COLOR)` (EXIF orientation applied, grey/palette/alpha/CMYK turned into
  three channels by OpenCV) and that BGR array handed to Pillow as RGB, so the model sees the channels swapped
  (mt-photos-ai onnx/clip.py `single_image_transform`, onnx/server.py `/clip/img`).
- `resize` (clip_image_preprocess): `shortest_crop`: shorter side to `size`, centre crop (immich);
  `hf_shortest_crop`: the same with the longer side rounded as transformers' image processors round it,
  int(size * long / short) (converted Hugging Face checkpoints, export/clip_convert.py);
  `exact`: resized to `size` x `size`, aspect ratio not kept, no crop (mt-photos-ai).
- `interpolation` (clip_image_preprocess): Pillow's `bicubic` or `bilinear` (antialiased).
- `tokenizer` (clip_tokenize): `tokenizers_json`: a Hugging Face `tokenizer.json` (immich);
  `bert_vocab`: a BERT FullTokenizer over `vocab.txt`, `[CLS] + pieces + [SEP]` (Chinese-CLIP, mt-photos-ai).
- `ids_dtype`: the integer type of the token ids (`int32` immich, `int64` Chinese-CLIP's ONNX export); written as
  the data type of clip_tokenize's outputs and clip_textual's inputs, not as a parameter.
- `number_format` (clip_image and clip_text, read by the adapter): how `/clip/*` writes each float32.
  `shortest`: its shortest round-trip decimal read back as a float64, 16 decimals (mt-photos-ml);
  `fixed16`: its exact value, 16 decimals, `"{:.16f}".format(float(v))` (mt-photos-ai onnx/server.py).
- `name` (parameter `clip_profile` of clip_image and clip_text): the profile's label, for people and `/check`.

A config records only the fields where its profile differs from the immich profile: every config written before
profiles existed is an immich one, and keeps serving as it is without a re-export. The immich profile is the one
default, written here once; export (which leaves its fields out) and serving (which fills them in) both read it
from `IMMICH` through `profile_parameters` and `read_profile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

PILLOW_RGB, OPENCV_BGR = "pillow_rgb", "opencv_bgr"
SHORTEST_CROP, HF_SHORTEST_CROP, EXACT = "shortest_crop", "hf_shortest_crop", "exact"
BICUBIC, BILINEAR = "bicubic", "bilinear"
TOKENIZERS_JSON, BERT_VOCAB = "tokenizers_json", "bert_vocab"
INT32, INT64 = "int32", "int64"
SHORTEST, FIXED16 = "shortest", "fixed16"

CHOICES: dict[str, tuple[str, ...]] = {
    "decoder": (PILLOW_RGB, OPENCV_BGR),
    "resize": (SHORTEST_CROP, HF_SHORTEST_CROP, EXACT),
    "interpolation": (BICUBIC, BILINEAR),
    "tokenizer": (TOKENIZERS_JSON, BERT_VOCAB),
    "ids_dtype": (INT32, INT64),
    "number_format": (SHORTEST, FIXED16),
}
PROFILE_PARAMETER = "clip_profile"  # the profile's name, on the entry models
# which config carries which field as a parameter (ids_dtype is a tensor data type, see the docstring)
IMAGE_FIELDS = ("decoder", "resize", "interpolation")
TOKENIZER_FIELDS = ("tokenizer",)
ANSWER_FIELDS = ("number_format",)
TRITON_TYPES = {INT32: "TYPE_INT32", INT64: "TYPE_INT64"}


class ProfileError(ValueError):
    """A profile field has a value no code serves."""


@dataclass(frozen=True)
class ClipProfile:
    name: str
    decoder: str
    resize: str
    interpolation: str
    tokenizer: str
    ids_dtype: str
    number_format: str

    def __post_init__(self) -> None:
        for field, allowed in CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ProfileError(f"CLIP profile field {field} is {value!r}; one of {', '.join(allowed)}")

    @property
    def triton_ids_type(self) -> str:
        return TRITON_TYPES[self.ids_dtype]


IMMICH = ClipProfile(
    name="immich", decoder=PILLOW_RGB, resize=SHORTEST_CROP, interpolation=BICUBIC, tokenizer=TOKENIZERS_JSON,
    ids_dtype=INT32, number_format=SHORTEST,
)
MT_PHOTOS_AI = ClipProfile(
    name="mt-photos-ai", decoder=OPENCV_BGR, resize=EXACT, interpolation=BICUBIC, tokenizer=BERT_VOCAB,
    ids_dtype=INT64, number_format=FIXED16,
)
PROFILES = {profile.name: profile for profile in (IMMICH, MT_PHOTOS_AI)}


def profile_parameters(profile: ClipProfile, which: Sequence[str], named: bool = False) -> dict[str, str]:
    """The config parameters of `profile` for one model: its fields of `which` that differ from IMMICH (and,
    with `named`, the profile's name when it is not IMMICH's)."""
    values = {field: getattr(profile, field) for field in which if getattr(profile, field) != getattr(IMMICH, field)}
    if named and profile.name != IMMICH.name:
        values[PROFILE_PARAMETER] = profile.name
    return values


def read_profile(parameters: Mapping[str, str]) -> ClipProfile:
    """The profile a config's parameters record: IMMICH with every recorded field replaced (a model reads only
    the fields its config carries; the others stay IMMICH's). ProfileError on a value no code serves."""
    recorded = {f.name: parameters[f.name] for f in fields(ClipProfile) if f.name != "name" and f.name in parameters}
    return replace(IMMICH, name=parameters.get(PROFILE_PARAMETER) or IMMICH.name, **recorded)


def describe(profile: ClipProfile) -> dict[str, str]:
    """Every field, for an export's record."""
    return asdict(profile)
