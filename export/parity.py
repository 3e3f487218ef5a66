"""Run exported files and compare them with the Keras model on real person crops.

Both sides go through the runtime's own code: the exported file runs in the backend users
run (:func:`evopose_sdk.backends.make_backend`, which also quantises int8 input), both are
called through :meth:`evopose_sdk.topdown.TopDownPipeline.heatmaps` (flip test off: the
heatmap figures compare the plain network outputs) and decoded by the model's
:class:`evopose_sdk.codec.HeatmapCodec`. The crops are the pipeline's
(:mod:`evopose_sdk.export.crops`).

Parity figures: heatmap differences (absolute and relative to the reference heatmap range)
and keypoint disagreement in input (crop) pixels after decoding both sides the same way.

A random-weight network gives near-flat heatmaps whose peak is noise: its keypoint
disagreement can be large even when the heatmaps agree to 1e-6 of their range. Judge those
files on the heatmap figures; the keypoint figures are meaningful for trained weights.
"""

from __future__ import annotations

import logging

import numpy as np

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.topdown import RunFn, TopDownPipeline

log = logging.getLogger(__name__)

#: Crops per network call for parity (the Keras reference and dynamic-batch ONNX files).
PARITY_BATCH = 8


def parity_heatmaps(run: RunFn, crops: np.ndarray, codec: HeatmapCodec) -> np.ndarray:
    """Heatmaps (N, h, w, K) float32 of crops (N, H, W, 3) through the pipeline, flip test off,
    :data:`PARITY_BATCH` crops per call."""
    pipe = TopDownPipeline(codec, flip_test=False, max_batch=PARITY_BATCH)
    return pipe.heatmaps(run, crops)


def compare_heatmaps(reference: np.ndarray, candidate: np.ndarray, codec: HeatmapCodec) -> dict:
    """Parity figures between two heatmap batches (N, h, w, K), decoded with ``codec``.

    Returns:
        dict with ``heatmap`` (max/mean absolute difference, reference min/max/range/std and the
        differences relative to the range) and ``keypoints_px`` (mean/median/max distance in
        crop pixels between decoded peaks, fraction of peaks within 1 px).
    """
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"heatmap shapes differ: reference {ref.shape}, candidate {cand.shape}")
    diff = np.abs(ref - cand)
    lo, hi = float(ref.min()), float(ref.max())
    rng = max(hi - lo, 1e-30)
    k_ref, _ = codec.decode(ref.astype(np.float32))
    k_cand, _ = codec.decode(cand.astype(np.float32))
    dist = np.linalg.norm(k_ref - k_cand, axis=-1)
    return {
        "heatmap": {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "ref_min": lo,
            "ref_max": hi,
            "ref_range": hi - lo,
            "ref_std": float(ref.std()),
            "max_abs_diff_rel_range": float(diff.max() / rng),
            "mean_abs_diff_rel_range": float(diff.mean() / rng),
            "candidate_min": float(cand.min()),
            "candidate_max": float(cand.max()),
        },
        "keypoints_px": {
            "decode": codec.decode_method,
            "mean": float(dist.mean()),
            "median": float(np.median(dist)),
            "max": float(dist.max()),
            "within_1px": float((dist <= 1.0).mean()),
        },
    }
