"""Activation ranges for int8: min/max, or the range with the least quantisation error.

TFLite quantises every activation tensor per tensor to 8 bits over one [lo, hi] range. The
converter takes the calibration minimum and maximum, so a few outliers (conv + batch-norm
outputs of 100+ while most channels stay within +-10) leave the bulk of the values on a
handful of levels. :func:`mse_range` instead picks, over shrunken candidates of [min, max],
the range whose uint8 round trip has the least mean squared error; for a tensor that feeds
a swish (``x * sigmoid(x)``) the error is measured after the swish, so its long negative
tail (swish of it is ~0) is clipped freely. The export stage writes these ranges into the
calibrated TFLite model before quantising (``calibration="mse"``,
:mod:`evopose_sdk.export.converters`), and quantisation-aware training
(:mod:`evopose_sdk.training.quantize`) trains with the same rule. Numpy only; it lives in
``training`` because export depends on training, never the other way round.
"""

from __future__ import annotations

import numpy as np

#: relative shrink factors tried for each end of the [min, max] range
SHRINK = np.linspace(0.1, 1.0, 19)


def uint8_grid(lo: float, hi: float, levels: int = 256) -> tuple[float, float]:
    """(scale, zero point) of asymmetric uint8 over [lo, hi] widened to hold 0, as TFLite
    quantises a tensor: level k stands for (k - zero) * scale. scale is 0 for an empty range."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return 0.0, 0.0
    scale = (hi - lo) / (levels - 1)
    return scale, float(np.round(-lo / scale))


def quant_dequant(values: np.ndarray, lo: float, hi: float, levels: int = 256) -> np.ndarray:
    """Round trip through asymmetric uint8 over [lo, hi] (lo <= 0 <= hi), as TFLite does."""
    scale, zero = uint8_grid(lo, hi, levels)
    if scale == 0:
        return np.zeros_like(values)
    return (np.clip(np.round(values / scale) + zero, 0, levels - 1) - zero) * scale


def swish(values: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), overflow-safe."""
    return values / (1.0 + np.exp(-np.clip(values, -60.0, 60.0)))


def mse_range(values: np.ndarray, feeds_swish: bool = False) -> tuple[float, float]:
    """[lo, hi] (lo <= 0 <= hi) with the least uint8 round-trip MSE of ``values``.

    Args:
        values: a sample of the tensor's calibration values (any shape; ~1e5 is plenty).
        feeds_swish: measure the error after ``swish`` (the tensor's consumer).
    """
    v = np.asarray(values, np.float64).ravel()
    lo0, hi0 = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    if hi0 - lo0 <= 0:
        return lo0, hi0
    f = swish if feeds_swish else (lambda t: t)
    ref = f(v)
    best = (float(np.mean((f(quant_dequant(v, lo0, hi0)) - ref) ** 2)), lo0, hi0)
    for a in SHRINK:
        for b in SHRINK:
            lo, hi = lo0 * b, hi0 * a
            err = float(np.mean((f(quant_dequant(v, lo, hi)) - ref) ** 2))
            if err < best[0]:
                best = (err, lo, hi)
    return best[1], best[2]


def subsample(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` values of ``values`` drawn uniformly (with its min and max kept)."""
    v = np.asarray(values).ravel()
    if v.size <= n:
        return v
    return np.concatenate([v[rng.integers(0, v.size, n)], [v.min(), v.max()]])
