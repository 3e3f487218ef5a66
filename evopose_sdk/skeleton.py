"""COCO-17 keypoint definitions: names, left/right flip pairs and the drawing skeleton.

Keypoint sets are data, not code: a model card may carry its own names, flip pairs and
skeleton (any K). These constants are the COCO defaults.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class CocoKeypoint(IntEnum):
    """Index of each COCO keypoint in a (..., 17, ...) array."""

    NOSE = 0
    LEFT_EYE = 1
    RIGHT_EYE = 2
    LEFT_EAR = 3
    RIGHT_EAR = 4
    LEFT_SHOULDER = 5
    RIGHT_SHOULDER = 6
    LEFT_ELBOW = 7
    RIGHT_ELBOW = 8
    LEFT_WRIST = 9
    RIGHT_WRIST = 10
    LEFT_HIP = 11
    RIGHT_HIP = 12
    LEFT_KNEE = 13
    RIGHT_KNEE = 14
    LEFT_ANKLE = 15
    RIGHT_ANKLE = 16


COCO_KEYPOINT_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in CocoKeypoint)

#: Pairs of (left, right) keypoint indices swapped by a horizontal flip.
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)

#: Limbs as 0-based (a, b) index pairs (the COCO skeleton, converted from 1-based).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

#: COCO OKS per-keypoint sigmas (used by OKS-NMS and evaluation).
COCO_SIGMAS: np.ndarray = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07,
     0.87, 0.87, 0.89, 0.89], dtype=np.float64) / 10.0


def default_sigmas(num_keypoints: int) -> np.ndarray:
    """OKS sigmas of a keypoint set that names none: COCO's for K=17, else a uniform 0.05 (a
    mid value of the COCO sigmas). The one fallback rule: a card without ``oks_sigmas``
    (:class:`~evopose_sdk.card.ModelCard`), OKS-NMS and the COCO evaluation use it."""
    if num_keypoints == len(COCO_SIGMAS):
        return COCO_SIGMAS.copy()
    return np.full((num_keypoints,), 0.05)


def flip_permutation(num_keypoints: int, flip_pairs: tuple[tuple[int, int], ...] | list) -> np.ndarray:
    """Return the index permutation (K,) that swaps left/right keypoints.

    Raises:
        ValueError: if a pair index is out of range or an index appears twice.
    """
    perm = np.arange(num_keypoints)
    seen: set[int] = set()
    for a, b in flip_pairs:
        a, b = int(a), int(b)
        for idx in (a, b):
            if not 0 <= idx < num_keypoints:
                raise ValueError(
                    f"flip pair ({a}, {b}) is out of range for {num_keypoints} keypoints")
            if idx in seen:
                raise ValueError(f"keypoint {idx} appears in more than one flip pair")
            seen.add(idx)
        perm[a], perm[b] = b, a
    return perm
