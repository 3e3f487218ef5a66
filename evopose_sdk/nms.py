"""Non-maximum suppression of duplicate people by keypoint similarity (OKS-NMS).

Two detections of the same person give nearly the same keypoints; OKS between them is
close to 1. Greedy NMS keeps the highest-scoring person and drops others whose OKS with
it exceeds the threshold (as in Simple Baselines / HRNet / the EvoPose2D code).
"""

from __future__ import annotations

import numpy as np

from evopose_sdk.skeleton import default_sigmas


def oks_matrix(keypoints_xy: np.ndarray, areas: np.ndarray,
               sigmas: np.ndarray | None = None) -> np.ndarray:
    """Object keypoint similarity between every pair of people.

    Args:
        keypoints_xy: (n, K, 2) keypoints in image pixels.
        areas: (n,) object areas in pixels^2 (box area is used by the runtime).
        sigmas: (K,) per-keypoint sigmas (a card's ``oks_sigmas``); None:
            :func:`~evopose_sdk.skeleton.default_sigmas`.

    Returns:
        (n, n) float64 OKS; entry (i, j) uses person i's area as the scale.
    """
    kp = np.asarray(keypoints_xy, np.float64)
    n, k = kp.shape[:2]
    sig = default_sigmas(k) if sigmas is None else np.asarray(sigmas, np.float64)
    if sig.shape != (k,):
        raise ValueError(f"sigmas must have shape ({k},); received {sig.shape}")
    var = (2.0 * sig) ** 2
    d2 = ((kp[:, None] - kp[None, :]) ** 2).sum(-1)  # (n, n, K)
    area = np.maximum(np.asarray(areas, np.float64).reshape(n), 1.0)
    e = d2 / (var[None, None, :] * (area[:, None, None] + np.spacing(1)) * 2.0)
    return np.exp(-e).mean(axis=-1)


def keypoint_oks(pred_xy: np.ndarray, gt_xy: np.ndarray, area: float,
                 sigmas: np.ndarray | None = None) -> np.ndarray:
    """Per-keypoint similarity of one prediction to its ground truth (COCO's OKS terms).

    Args:
        pred_xy, gt_xy: (K, 2) keypoints in image pixels.
        area: the ground-truth object area in pixels^2.
        sigmas: (K,) per-keypoint sigmas; None: :func:`~evopose_sdk.skeleton.default_sigmas`.

    Returns:
        (K,) float64 in [0, 1]; their mean over labelled keypoints is the person's OKS.
    """
    p, g = np.asarray(pred_xy, np.float64), np.asarray(gt_xy, np.float64)
    sig = default_sigmas(len(g)) if sigmas is None else np.asarray(sigmas, np.float64)
    d2 = ((p - g) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * max(float(area), 1.0) * (2.0 * sig) ** 2))


def oks_nms(keypoints_xy: np.ndarray, scores: np.ndarray, areas: np.ndarray,
            threshold: float = 0.9, sigmas: np.ndarray | None = None) -> np.ndarray:
    """Greedy OKS-NMS.

    Args:
        keypoints_xy: (n, K, 2); scores: (n,) instance scores; areas: (n,) in pixels^2.
        threshold: drop a person whose OKS with a kept, higher-scoring person exceeds this.
        sigmas: (K,) per-keypoint sigmas, as in :func:`oks_matrix`.

    Returns:
        (m,) int64 indices of kept people, highest score first.
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    n = s.shape[0]
    if n == 0:
        return np.zeros((0,), np.int64)
    oks = oks_matrix(keypoints_xy, areas, sigmas)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(n, dtype=bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= oks[i] > threshold
    return np.asarray(keep, dtype=np.int64)
