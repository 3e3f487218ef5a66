"""The heatmap codec: keypoints <-> Gaussian heatmap targets, one object for every stage.

In the spirit of mmpose's ``MSRAHeatmap`` (``mmpose/codecs/msra_heatmap.py``): the data
pipeline encodes crop keypoints into targets with :meth:`HeatmapCodec.encode`, the loss reads
its packed ``y_true`` with :meth:`HeatmapCodec.split`, and evaluation, export parity and the
runtime decode model heatmaps with :meth:`HeatmapCodec.decode`. The target format, the
packed layout and the decoder live here, so the stages cannot drift apart.

Coordinates follow :mod:`evopose_sdk.geometry`: crop pixels under the pixel-centre convention;
heatmap cell ``j`` of stride ``s`` is centred on crop pixel ``j*s + (s - 1)/2``. The decoding
math (argmax, quarter offset, DARK) is :func:`evopose_sdk.decode.decode_heatmaps`.

Numpy only: the runtime never imports TensorFlow or Keras. :meth:`split` uses nothing but
slicing, so it works on Keras tensors inside a loss as well as on numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.decode import DECODE_METHODS, DecodeMethod, decode_heatmaps


def default_sigma(heatmap_hw: tuple[int, int]) -> float:
    """Gaussian sigma in heatmap cells: 2 at a 64x48 heatmap, proportional to its height."""
    return 2.0 * heatmap_hw[0] / 64.0


@dataclass(frozen=True)
class HeatmapCodec:
    """Unbiased Gaussian heatmaps (peak 1 at the exact sub-pixel keypoint) and their decoder.

    Args:
        input_size: crop size (H, W) in pixels, the model's input.
        heatmap_stride: crop pixels per heatmap cell (heatmap = input // stride).
        sigma: Gaussian sigma in heatmap cells; None: :func:`default_sigma` of the heatmap.
        decode_method: ``"dark"``, ``"quarter"`` or ``"argmax"``
            (:func:`evopose_sdk.decode.decode_heatmaps`).
        dark_kernel: DARK blur kernel (odd; 0 = the decoder's default).

    Raises:
        ValueError: non-positive sizes/stride/sigma, or an unknown decode method.
    """

    input_size: tuple[int, int]
    heatmap_stride: int
    sigma: float | None = None
    decode_method: DecodeMethod = "dark"
    dark_kernel: int = 0

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.input_size)
        s = int(self.heatmap_stride)
        if h < 1 or w < 1 or s < 1 or h < s or w < s:
            raise ValueError(f"input_size must be positive and at least heatmap_stride; received "
                             f"input_size={self.input_size}, heatmap_stride={self.heatmap_stride}")
        if self.sigma is not None and not float(self.sigma) > 0:
            raise ValueError(f"sigma must be positive or None; received {self.sigma}")
        if self.decode_method not in DECODE_METHODS:
            raise ValueError(f"unknown decode method {self.decode_method!r}; choose one of "
                             f"{DECODE_METHODS}")
        object.__setattr__(self, "input_size", (h, w))
        object.__setattr__(self, "heatmap_stride", s)

    @classmethod
    def from_card(cls, card: Any, **kwargs: Any) -> HeatmapCodec:
        """The codec of a :class:`~evopose_sdk.card.ModelCard` (its input size and stride);
        ``kwargs`` go to the constructor (``decode_method``, ``sigma``, ...)."""
        return cls(tuple(card.input_size), int(card.heatmap_stride), **kwargs)

    @classmethod
    def from_shapes(cls, input_hw: tuple[int, int], heatmap_hw: tuple[int, int],
                    **kwargs: Any) -> HeatmapCodec:
        """The codec of a model whose input is ``input_hw`` and whose heatmaps are
        ``heatmap_hw`` (H, W); the stride must be a whole number, the same on both axes."""
        h, w = (int(v) for v in input_hw)
        hh, hw = (int(v) for v in heatmap_hw)
        if hh < 1 or hw < 1 or h % hh or w % hw or h // hh != w // hw:
            raise ValueError(f"input {(h, w)} and heatmaps {(hh, hw)} have no common whole stride")
        return cls((h, w), h // hh, **kwargs)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """Heatmap (H, W) in cells."""
        return (self.input_size[0] // self.heatmap_stride,
                self.input_size[1] // self.heatmap_stride)

    @property
    def sigma_cells(self) -> float:
        """The Gaussian sigma in heatmap cells actually used by :meth:`encode`."""
        return default_sigma(self.heatmap_size) if self.sigma is None else float(self.sigma)

    # -- encode -----------------------------------------------------------------------------
    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target heatmaps and weights of one person.

        Args:
            keypoints: (K, 2) keypoints (x, y) in crop pixels (pixel-centre convention).
            visible: (K,) bool, joints that are labelled.

        Returns:
            ``heatmaps`` (Hh, Wh, K) float32 with peak 1 at the exact sub-pixel centre
            ``geometry.crop_to_heatmap(kp, stride)``, and ``weights`` (K,) float32: 1 for a
            labelled joint whose centre lies inside the heatmap, else 0 (its map is all zeros).

        Raises:
            ValueError: ``keypoints`` is not (K, 2) or ``visible`` not (K,).
        """
        kp = np.asarray(keypoints, np.float64)
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise ValueError(f"keypoints must be (K, 2); received shape {kp.shape}")
        k = kp.shape[0]
        vis = np.asarray(visible, bool)
        if vis.shape != (k,):
            raise ValueError(f"visible must be ({k},); received shape {vis.shape}")
        hh, ww = self.heatmap_size
        sigma = self.sigma_cells
        mu = geometry.crop_to_heatmap(kp, self.heatmap_stride)
        inside = ((mu[:, 0] >= -0.5) & (mu[:, 0] <= ww - 0.5) & (mu[:, 1] >= -0.5)
                  & (mu[:, 1] <= hh - 0.5) & np.all(np.isfinite(mu), axis=1))
        weights = (vis & inside).astype(np.float32)
        xs = np.arange(ww, dtype=np.float64)
        ys = np.arange(hh, dtype=np.float64)
        mu = np.where(np.isfinite(mu), mu, 0.0)
        gx = np.exp(-((xs[None, :] - mu[:, :1]) ** 2) / (2 * sigma * sigma))  # (K, Ww)
        gy = np.exp(-((ys[None, :] - mu[:, 1:]) ** 2) / (2 * sigma * sigma))  # (K, Hh)
        hm = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
        return np.ascontiguousarray(hm.transpose(1, 2, 0), dtype=np.float32), weights

    # -- packed targets (the loss's y_true) ----------------------------------------------------
    @staticmethod
    def pack(heatmaps: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(B, Hh, Wh, K) heatmaps + (B, K) weights -> (B, Hh, Wh, 2K) float32 ``y_true``.

        Channels ``[:K]`` are the target heatmaps, ``[K:]`` the per-joint weights broadcast over
        the heatmap, so any Keras training entry point carries the weights inside ``y``.
        :meth:`split` is the inverse.
        """
        hm = np.asarray(heatmaps)
        w = np.asarray(weights)
        if hm.ndim != 4 or w.shape != (hm.shape[0], hm.shape[3]):
            raise ValueError(f"heatmaps must be (B, Hh, Wh, K) and weights (B, K); received "
                             f"{hm.shape} and {w.shape}")
        b, hh, ww, k = hm.shape
        wb = np.broadcast_to(w[:, None, None, :].astype(np.float32), (b, hh, ww, k))
        return np.concatenate([hm.astype(np.float32), wb], axis=-1)

    @staticmethod
    def split(y_true: Any, num_keypoints: int | None = None) -> tuple[Any, Any]:
        """Inverse of :meth:`pack` on numpy arrays or backend tensors (slicing only).

        Args:
            y_true: (..., Hh, Wh, 2K) packed targets.
            num_keypoints: K; None: half the channels (must then be static).

        Returns:
            ``heatmaps`` (..., Hh, Wh, K) and ``weights`` (..., Hh, Wh, K) (broadcast).
        """
        k = int(y_true.shape[-1]) // 2 if num_keypoints is None else int(num_keypoints)
        return y_true[..., :k], y_true[..., k:]

    # -- decode -------------------------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints in crop pixels from model heatmaps.

        Args:
            heatmaps: (N, Hh, Wh, K) float, NHWC as the model file emits them.

        Returns:
            ``keypoints`` (N, K, 2) float64 (x, y) in crop pixels (pixel-centre convention) and
            ``scores`` (N, K) float32 peak values.

        Raises:
            ValueError: heatmaps are not NHWC of this codec's heatmap size.
        """
        hm = np.asarray(heatmaps)
        if hm.ndim != 4 or tuple(hm.shape[1:3]) != self.heatmap_size:
            raise ValueError(f"heatmaps must be (N, {self.heatmap_size[0]}, "
                             f"{self.heatmap_size[1]}, K); received shape {hm.shape}")
        cells, scores = decode_heatmaps(hm, self.decode_method, self.dark_kernel)
        return geometry.heatmap_to_crop(cells, self.heatmap_stride), scores
