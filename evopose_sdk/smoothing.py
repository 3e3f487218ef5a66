"""Temporal smoothing of keypoints: the One-Euro filter (Casiez et al., CHI 2012).

The One-Euro filter is a first-order low-pass filter whose cutoff frequency rises with
the signal's speed: slow motion is smoothed hard (little jitter), fast motion passes with
little lag. ``cutoff = min_cutoff + beta * |dx/dt|``; ``alpha = 1 / (1 + tau / dt)`` with
``tau = 1 / (2 pi cutoff)``.

:class:`OneEuroFilter` filters an array of any shape element-wise (e.g. one person's
(K, 2) keypoints); :class:`KeypointSmoother` keeps one filter per track id and applies
them to a :class:`~evopose_sdk.result.PoseResult`-like set of keypoints frame by frame.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OneEuroFilter", "KeypointSmoother"]


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise One-Euro filter over arrays of a fixed shape.

    Args:
        min_cutoff: cutoff frequency (Hz) at zero speed; lower = smoother, more lag.
        beta: speed coefficient (1/units); higher = less lag on fast motion.
        d_cutoff: cutoff (Hz) of the low-pass on the derivative.

    Call it with the new sample and its timestamp in seconds; it returns the filtered
    sample (float64 array of the same shape). Timestamps must increase.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(
                "OneEuroFilter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; received "
                f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the state; the next sample passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or x.shape != self._x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:  # repeated or out-of-order timestamp: keep the state, return it
            return self._x.copy()
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        a = _alpha(cutoff, dt)
        x_hat = a * x + (1.0 - a) * self._x
        self._x, self._dx, self._t = x_hat, dx_hat, float(t)
        return x_hat.copy()


class KeypointSmoother:
    """One One-Euro filter per track id, applied to keypoint (x, y) in image pixels.

    Keypoint scores pass through unchanged. People without a track id (-1) are not
    smoothed. A track unseen for ``max_age_s`` seconds is forgotten.

    ``min_cutoff`` is in Hz and ``beta`` in 1/pixel; the defaults suit 25-30 fps video of
    people a few hundred pixels tall.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0,
                 max_age_s: float = 1.0) -> None:
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # validates the parameters
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.max_age_s = float(max_age_s)
        self._filters: dict[int, OneEuroFilter] = {}
        self._last_seen: dict[int, float] = {}

    def reset(self) -> None:
        self._filters.clear()
        self._last_seen.clear()

    def __call__(self, keypoints: np.ndarray, track_ids: np.ndarray, t: float) -> np.ndarray:
        """Smooth ``keypoints`` (n, K, 3) float (x, y, score) given ``track_ids`` (n,) at
        time ``t`` seconds; returns a new float32 (n, K, 3) array."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        track_ids = np.asarray(track_ids, dtype=np.int64).reshape(-1)
        if keypoints.ndim != 3 or keypoints.shape[-1] != 3 or len(keypoints) != len(track_ids):
            raise ValueError(
                f"keypoints must be (n, K, 3) with n = len(track_ids); received "
                f"{keypoints.shape} and {track_ids.shape}")
        out = keypoints.copy()
        for i, tid in enumerate(track_ids.tolist()):
            if tid < 0:
                continue
            f = self._filters.get(tid)
            if f is None:
                f = self._filters[tid] = OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)
            elif t - self._last_seen[tid] > self.max_age_s:
                f.reset()
            out[i, :, :2] = f(keypoints[i, :, :2], t)
            self._last_seen[tid] = t
        for tid in [k for k, ts in self._last_seen.items() if t - ts > self.max_age_s]:
            self._filters.pop(tid, None)
            self._last_seen.pop(tid, None)
        return out
