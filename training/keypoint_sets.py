"""Keypoint sets: names, left/right flip pairs and skeleton of a model's K joints.

Training reads the set from the sources' COCO ``categories[]``
(:func:`evopose_sdk.training.sources.keypoint_set_from_category`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
