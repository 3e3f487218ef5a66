"""Keypoint sets: names, left/right flip pairs and skeleton of a model's K joints.

The set travels with the model: training reads it from the sources' COCO ``categories[]``
(:func:`evopose_sdk.training.sources.keypoint_set_from_category`) and writes it beside every
model file it saves (``step-000000123.keras`` -> ``step-000000123.keypoints.json``,
:func:`keypoints_path_for`); export reads it from there into the model card
(``keypoint_names``, ``flip_pairs``, ``skeleton``: the sidecar uses the card's field names),
and the runtime flips and draws by the card.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.skeleton import flip_permutation

#: ``<model file stem><KEYPOINTS_SUFFIX>`` beside the model file.
KEYPOINTS_SUFFIX = ".keypoints.json"

_UPPER_WORDS = ("nose", "eye", "ear", "shoulder", "elbow", "wrist", "head", "neck", "mouth")


@dataclass(frozen=True)
class KeypointSet:
    """Names (K,), left/right flip pairs and skeleton (0-based index pairs)."""

    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        """``{"keypoint_names", "flip_pairs", "skeleton"}`` (the model card's fields)."""
        return {"keypoint_names": list(self.names),
                "flip_pairs": [list(p) for p in self.flip_pairs],
                "skeleton": [list(p) for p in self.skeleton]}

    @classmethod
    def from_dict(cls, data: Mapping) -> KeypointSet:
        """Inverse of :meth:`to_dict`; raises ValueError for a malformed set."""
        try:
            names = tuple(str(n) for n in data["keypoint_names"])
            pairs = tuple((int(a), int(b)) for a, b in data.get("flip_pairs") or ())
            skeleton = tuple((int(a), int(b)) for a, b in data.get("skeleton") or ())
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a keypoint set: {exc!r}") from exc
        if not names:
            raise ValueError("a keypoint set needs at least one name")
        flip_permutation(len(names), pairs)  # validates the pairs
        if any(not (0 <= i < len(names)) for p in skeleton for i in p):
            raise ValueError(f"skeleton {skeleton} indexes past {len(names)} keypoints")
        return cls(names, pairs, skeleton)

    @property
    def upper_body(self) -> np.ndarray:
        """Indices of upper-body joints (by name), for the half-body augmentation."""
        return np.array([i for i, n in enumerate(self.names)
                         if any(w in n.lower() for w in _UPPER_WORDS)], dtype=np.int64)


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pair ``left_x``/``right_x`` (also ``l_x``/``r_x``, any case) names into flip pairs."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for name, i in index.items():
        for lp, rp in (("left_", "right_"), ("left", "right"), ("l_", "r_")):
            if name.startswith(lp):
                j = index.get(rp + name[len(lp):])
                if j is not None:
                    pairs.append((i, j))
                break
    return tuple(sorted(set(pairs)))


def keypoints_path_for(model_path: str | os.PathLike) -> Path:
    """Sidecar of a model file: ``run/final.keras`` -> ``run/final.keypoints.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + KEYPOINTS_SUFFIX)


def save_beside(keypoints: KeypointSet, model_path: str | os.PathLike) -> Path:
    """Write ``keypoints`` as the sidecar of ``model_path`` (atomically); returns its path."""
    path = keypoints_path_for(model_path)
    atomic_write_text(path, json.dumps(keypoints.to_dict(), indent=1) + "\n")
    return path


def read_beside(model_path: str | os.PathLike) -> KeypointSet | None:
    """The keypoint set written beside ``model_path``, or None when it has no sidecar.

    Raises:
        ValueError: the sidecar exists but is not a valid keypoint set.
    """
    path = keypoints_path_for(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read keypoint set {path}: {exc}") from exc
    try:
        return KeypointSet.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
