"""Model cards: the JSON description that travels with every exported model file.

A card sits next to its model as ``<model file>.json`` (``evopose2d_s.onnx`` ->
``evopose2d_s.onnx.json``) and, for ONNX, is also embedded in the file's metadata under
:data:`ONNX_METADATA_KEY` (with an empty ``sha256``, since embedding changes the bytes).
The runtime needs only the card and the file: any top-down heatmap model that follows the
contract (NHWC float32 ``image`` input, RGB 0-255; NHWC ``heatmaps`` output) runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.backends import DEFAULT_BACKEND, FILE_FORMATS
from evopose_sdk.errors import EvoPoseError, or_list
from evopose_sdk.skeleton import (
    COCO_FLIP_PAIRS,
    COCO_KEYPOINT_NAMES,
    COCO_SKELETON,
    default_sigmas,
)

ONNX_METADATA_KEY = "evopose_card"
CARD_SUFFIX = ".json"
CARD_VERSION = 1


class CardError(EvoPoseError, ValueError):
    """A model card is missing, malformed, or does not match its model file."""


@dataclass
class ModelCard:
    """Everything the runtime needs to know about a model file.

    Attributes:
        name: model name, e.g. ``"evopose2d-s"``.
        input_size: model input (height, width) in pixels.
        heatmap_stride: input pixels per heatmap cell (2 for S/M/L, 4 for XS).
        keypoint_names: K names, in output channel order.
        flip_pairs: (left, right) index pairs swapped by a horizontal flip.
        skeleton: (a, b) index pairs drawn as limbs.
        oks_sigmas: K per-keypoint OKS sigmas, used by OKS-NMS and the COCO evaluation. A card
            without them (every card written before the field) gets
            :func:`~evopose_sdk.skeleton.default_sigmas`: COCO's for 17 keypoints.
        genotype: 7 x [kernel, repeats, filters/8, stride], or None for foreign models.
        file_format: ``"onnx"`` or ``"tflite"`` (a registered backend's,
            :data:`~evopose_sdk.backends.FILE_FORMATS`).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        trained: False for random-weight exports (the CLI warns when it runs them).
        training_data: free text or dict describing data and licences.
        metrics: measured figures (AP, parity, ...), free-form dict.
        sha256: hex digest of the model file this card describes.
    """

    name: str
    input_size: tuple[int, int]
    heatmap_stride: int
    keypoint_names: list[str] = field(default_factory=lambda: list(COCO_KEYPOINT_NAMES))
    flip_pairs: list[list[int]] = field(default_factory=lambda: [list(p) for p in COCO_FLIP_PAIRS])
    skeleton: list[list[int]] = field(default_factory=lambda: [list(p) for p in COCO_SKELETON])
    oks_sigmas: list[float] | None = None
    genotype: list[list[int]] | None = None
    file_format: str = DEFAULT_BACKEND.file_format
    precision: str = "fp32"
    trained: bool = False
    training_data: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    input_name: str = "image"
    output_name: str = "heatmaps"
    sha256: str = ""
    card_version: int = CARD_VERSION

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.heatmap_stride = int(self.heatmap_stride)
        if self.oks_sigmas is None:
            self.oks_sigmas = default_sigmas(len(self.keypoint_names)).tolist()
        self.validate()

    def __repr__(self) -> str:  # metrics and recipe run to thousands of characters
        return (f"ModelCard(name={self.name!r}, input_size={self.input_size}, "
                f"heatmap_stride={self.heatmap_stride}, file_format={self.file_format!r}, "
                f"precision={self.precision!r}, trained={self.trained})")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """Heatmap (height, width) in cells."""
        return (self.input_size[0] // self.heatmap_stride,
                self.input_size[1] // self.heatmap_stride)

    def validate(self) -> None:
        """Raise :class:`CardError` naming the first inconsistent field."""
        h, w = self.input_size
        if h <= 0 or w <= 0:
            raise CardError(f"input_size must be positive (h, w); received {self.input_size}")
        if self.heatmap_stride <= 0 or h % self.heatmap_stride or w % self.heatmap_stride:
            raise CardError(
                f"heatmap_stride {self.heatmap_stride} must divide input_size {self.input_size}")
        k = len(self.keypoint_names)
        if k == 0:
            raise CardError("keypoint_names is empty")
        for pair_list, what in ((self.flip_pairs, "flip_pairs"), (self.skeleton, "skeleton")):
            for p in pair_list:
                if len(p) != 2 or not all(0 <= int(i) < k for i in p):
                    raise CardError(f"{what} entry {p} is not a pair of indices below {k}")
        sigmas = self.oks_sigmas
        if sigmas is not None and (len(sigmas) != k or not all(float(v) > 0 for v in sigmas)):
            raise CardError(f"oks_sigmas must be {k} positive numbers (one per keypoint); "
                            f"received {sigmas}")
        if self.file_format not in FILE_FORMATS:
            raise CardError(f"file_format must be {or_list(FILE_FORMATS)}; received "
                            f"{self.file_format!r}")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise CardError(f"precision must be fp32, fp16 or int8; received {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise CardError(f"a card must be a JSON object; received {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("name", "input_size", "heatmap_stride") if k not in data]
        if missing:
            raise CardError(f"card lacks required fields: {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CardError):
                raise
            raise CardError(f"malformed card: {exc}") from exc

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CardError(f"model card not found: {p}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CardError(f"model card {p} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_json() + "\n")


def card_path_for(model_path: str | os.PathLike) -> Path:
    """Path of the card that describes ``model_path`` (``x.onnx`` -> ``x.onnx.json``)."""
    p = Path(model_path)
    return p.with_name(p.name + CARD_SUFFIX)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(card: ModelCard, model_path: str | os.PathLike) -> None:
    """Raise :class:`CardError` if the card's sha256 does not match the file."""
    if not card.sha256:
        raise CardError(f"card for {model_path} has no sha256; re-export the model")
    actual = sha256_file(model_path)
    if actual != card.sha256:
        raise CardError(
            f"card/file mismatch for {model_path}: card sha256 {card.sha256[:12]}..., "
            f"file sha256 {actual[:12]}... (the file was changed or the card belongs to "
            "another file)")
