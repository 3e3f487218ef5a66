"""One top-down training sample: crop, augmentation recipe and heatmap targets.

Backend-agnostic (numpy + OpenCV). The crop geometry is :mod:`evopose_sdk.geometry`'s; this
module only composes it with the augmentation (the users'-people augmentations themselves
are in :mod:`evopose_sdk.training.augment`).

* Targets are unbiased Gaussians: the centre is the sub-pixel keypoint in heatmap cells,
  ``geometry.crop_to_heatmap(kp_crop, stride)``; sigma is 2 cells at a 64x48 heatmap and
  scales with the heatmap height.
* Every random choice of a sample is drawn from the ``rng`` it is given
  (:class:`evopose_sdk.training.batches.KeypointBatches` seeds it by (seed, epoch, position)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, flip_permutation
from evopose_sdk.training import augment as augmod
from evopose_sdk.training.sources import DataError


def default_sigma(heatmap_hw: tuple[int, int]) -> float:
    """Gaussian sigma in heatmap cells: 2 at a 64x48 heatmap, proportional to its height."""
    return 2.0 * heatmap_hw[0] / 64.0


def encode_heatmaps(
    keypoints_crop: np.ndarray,
    valid: np.ndarray,
    heatmap_hw: tuple[int, int],
    stride: float,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased Gaussian target heatmaps.

    Args:
        keypoints_crop: (K, 2) keypoints in crop pixels (pixel-centre convention).
        valid: (K,) bool, joints that are labelled.
        heatmap_hw: (Hh, Wh) heatmap size in cells.
        stride: crop pixels per heatmap cell.
        sigma: Gaussian sigma in cells (default :func:`default_sigma`).

    Returns:
        ``heatmaps`` (Hh, Wh, K) float32 with peak 1 at the exact sub-pixel centre
        ``geometry.crop_to_heatmap(kp, stride)``, and ``weights`` (K,) float32: 1 for a
        labelled joint whose centre lies inside the heatmap, else 0 (its map is all zeros).
    """
    hh, ww = int(heatmap_hw[0]), int(heatmap_hw[1])
    sigma = default_sigma((hh, ww)) if sigma is None else float(sigma)
    kp = np.asarray(keypoints_crop, np.float64).reshape(-1, 2)
    k = kp.shape[0]
    mu = geometry.crop_to_heatmap(kp, stride)
    inside = ((mu[:, 0] >= -0.5) & (mu[:, 0] <= ww - 0.5) & (mu[:, 1] >= -0.5)
              & (mu[:, 1] <= hh - 0.5) & np.all(np.isfinite(mu), axis=1))
    weights = (np.asarray(valid, bool).reshape(k) & inside).astype(np.float32)
    xs = np.arange(ww, dtype=np.float64)
    ys = np.arange(hh, dtype=np.float64)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    gx = np.exp(-((xs[None, :] - mu[:, :1]) ** 2) / (2 * sigma * sigma))  # (K, Ww)
    gy = np.exp(-((ys[None, :] - mu[:, 1:]) ** 2) / (2 * sigma * sigma))  # (K, Hh)
    hm = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
    return np.ascontiguousarray(hm.transpose(1, 2, 0), dtype=np.float32), weights


@dataclass
class AugmentConfig:
    """The paper's (HRNet-style) recipe. ``None`` / ``enabled=False`` means no augmentation.

    scale_factor: crop scale drawn from ``1 + U(-f, f)`` (0.3: 0.7x..1.3x).
    rotation: max rotation in degrees, applied with ``rotation_prob``.
    flip_prob: horizontal flip with left/right swap.
    half_body_prob: crop to the upper or lower body when more than ``half_body_min_joints``
        joints are labelled.
    color_jitter: brightness/contrast/saturation factors drawn from ``1 + U(-c, c)``.
    truncate_prob: the frame cuts through the person (:func:`augment.truncate`); exclusive
        with the half-body crop.
    paste_person_prob: another training person pasted in front (:func:`augment.paste_person`).
    occlude_prob: patches of another photo over the crop (:func:`augment.occlude`).
    blur_prob / lowres_prob: blur, or a 2-4x down-up round trip (:func:`augment.degrade`).
    The last five default to 0 (the paper's recipe).
    """

    enabled: bool = True
    scale_factor: float = 0.3
    rotation: float = 40.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.2
    truncate_prob: float = 0.0
    paste_person_prob: float = 0.0
    occlude_prob: float = 0.0
    blur_prob: float = 0.0
    lowres_prob: float = 0.0

    @property
    def needs_other(self) -> bool:
        """Whether samples need a second training image (pasted people, occluder texture)."""
        return self.enabled and (self.paste_person_prob > 0 or self.occlude_prob > 0)

    @classmethod
    def from_any(cls, value) -> AugmentConfig:
        if value is None or value is False:
            return cls(enabled=False)
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise DataError(f"unknown augmentation fields {sorted(unknown)}")
            return cls(**value)
        raise DataError(f"cannot read an augmentation config from {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def flip_matrix(width: int) -> np.ndarray:
    """(2, 3) affine of a horizontal mirror of a ``width``-pixel crop (pixel centres)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of ``outer(inner(x))``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def _half_body_box(kps: np.ndarray, upper: np.ndarray, rng: np.random.Generator):
    k = kps.shape[0]
    vis = kps[:, 2] > 0
    upper_mask = np.zeros(k, bool)
    upper_mask[upper] = True
    up = np.where(vis & upper_mask)[0]
    low = np.where(vis & ~upper_mask)[0]
    chosen = up if (rng.random() < 0.5 and len(up) > 2) else low
    if len(chosen) < 2:
        chosen = up if len(up) >= 2 else chosen
    if len(chosen) < 2:
        return None
    pts = kps[chosen, :2]
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return np.array([x1, y1, x2, y2])


def _color_jitter(crop: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    img = crop.astype(np.float32)
    b, c, s = 1.0 + rng.uniform(-amount, amount, size=3)
    img = img * b
    mean = img.mean()
    img = (img - mean) * c + mean
    gray = img.mean(axis=2, keepdims=True)
    img = (img - gray) * s + gray
    return np.clip(img, 0, 255).astype(np.uint8)


def make_sample(
    image_rgb: np.ndarray,
    box_xywh: np.ndarray,
    keypoints: np.ndarray,
    input_hw: tuple[int, int],
    stride: int,
    *,
    flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS,
    upper_body: np.ndarray | None = None,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
    sigma: float | None = None,
    padding: float = geometry.DEFAULT_PADDING,
    other: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """One top-down training sample.

    Args:
        image_rgb: (H, W, 3) uint8 image.
        box_xywh: (4,) person box in image pixels.
        keypoints: (K, 3) ``x, y, v`` in image pixels.
        input_hw: model input (h, w); stride: heatmap stride.
        augment: augmentation (None: plain crop, as at validation).
        other: (image (H, W, 3) uint8 RGB, box (4,) xywh) of another training person, for
            the pasted-person and occluder augmentations.

    Returns:
        dict with ``image`` (h, w, 3) uint8 RGB crop, ``heatmaps`` (h/s, w/s, K) float32,
        ``weights`` (K,) float32, ``keypoints`` (K, 2) float64 in crop pixels (after a flip,
        already left/right-swapped), ``matrix`` (2, 3) image -> crop affine, ``flipped`` bool.
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    kps = np.asarray(keypoints, np.float64)
    aug = augment if augment is not None and augment.enabled else None
    rng = rng if rng is not None else np.random.default_rng()
    x, y, bw, bh = np.asarray(box_xywh, np.float64)
    box = np.array([x, y, x + bw, y + bh])
    pad = padding
    rot = 0.0
    scale = 1.0
    flip = False
    truncated = False
    if aug is not None and aug.truncate_prob > 0 and rng.random() < aug.truncate_prob:
        cut = augmod.truncate(image_rgb, np.array([x, y, bw, bh]), kps, rng)
        if cut is not None:
            image_rgb, box, kps = cut
            truncated = True
    if aug is not None:
        if (not truncated and upper_body is not None and len(upper_body) and aug.half_body_prob > 0
                and int((kps[:, 2] > 0).sum()) > aug.half_body_min_joints
                and rng.random() < aug.half_body_prob):
            hb = _half_body_box(kps, upper_body, rng)
            if hb is not None:
                box, pad = hb, 1.5
        scale = 1.0 + rng.uniform(-aug.scale_factor, aug.scale_factor)
        if rng.random() < aug.rotation_prob:
            rot = rng.uniform(-aug.rotation, aug.rotation)
        flip = rng.random() < aug.flip_prob
    center, size = geometry.box_to_center_size(box, w / h, pad)
    matrix = geometry.crop_affine(center, size * scale, (h, w), rot)
    if flip:
        matrix = compose_affine(flip_matrix(w), matrix)
    crop = geometry.warp_crop(image_rgb, matrix, (h, w))
    kp_crop = geometry.apply_affine(kps[:, :2], matrix)
    valid = kps[:, 2] > 0
    if flip:
        perm = flip_permutation(kps.shape[0], flip_pairs)
        kp_crop, valid = kp_crop[perm], valid[perm]
    if aug is not None and other is not None:
        if aug.paste_person_prob > 0 and rng.random() < aug.paste_person_prob:
            crop = augmod.paste_person(crop, other[0], other[1], rng)
        if aug.occlude_prob > 0 and rng.random() < aug.occlude_prob:
            crop = augmod.occlude(crop, other[0], rng)
    if aug is not None and aug.color_jitter > 0:
        crop = _color_jitter(crop, aug.color_jitter, rng)
    if aug is not None and (aug.blur_prob > 0 or aug.lowres_prob > 0):
        r = rng.random()
        if r < aug.lowres_prob:
            crop = augmod.degrade(crop, rng, lowres=True)
        elif r < aug.lowres_prob + aug.blur_prob:
            crop = augmod.degrade(crop, rng, lowres=False)
    hm, weights = encode_heatmaps(kp_crop, valid, (h // stride, w // stride), stride, sigma)
    return {"image": crop, "heatmaps": hm, "weights": weights, "keypoints": kp_crop,
            "matrix": matrix, "flipped": flip}
