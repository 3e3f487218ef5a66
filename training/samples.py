"""One top-down training sample: crop, augmentation recipe and heatmap targets.

Backend-agnostic (numpy + OpenCV). The crop geometry is :mod:`evopose_sdk.geometry`'s; this
module only composes it with the augmentation (the users'-people augmentations themselves
are in :mod:`evopose_sdk.training.augment`).

* Targets are the codec's (:meth:`evopose_sdk.codec.HeatmapCodec.encode`): unbiased
  Gaussians centred on the sub-pixel keypoint in heatmap cells; sigma is 2 cells at a 64x48
  heatmap and scales with the heatmap height.
* Every random choice of a sample is drawn from the ``rng`` it is given
  (:class:`evopose_sdk.training.batches.KeypointBatches` seeds it by (seed, epoch, position)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, flip_permutation
from evopose_sdk.training import augment as augmod
from evopose_sdk.training.sources import DataError


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
    hm, weights = HeatmapCodec((h, w), stride, sigma).encode(kp_crop, valid)
    return {"image": crop, "heatmaps": hm, "weights": weights, "keypoints": kp_crop,
            "matrix": matrix, "flipped": flip}
