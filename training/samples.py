"""One top-down training sample: the augmentation recipe and :func:`make_sample`.

Backend-agnostic (numpy + OpenCV). The sample is made by the steps of
:mod:`evopose_sdk.training.pipeline` (crop geometry from :mod:`evopose_sdk.geometry`, the
users'-people augmentations from :mod:`evopose_sdk.training.augment`); :class:`AugmentConfig`
is the older, fixed-order way to name them (``data.augment``).

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
from evopose_sdk.skeleton import COCO_FLIP_PAIRS
from evopose_sdk.training.pipeline import Context, Pipeline, steps_from_augment
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
    pipeline: Pipeline | None = None,
) -> dict:
    """One top-down training sample through a :class:`~evopose_sdk.training.pipeline.Pipeline`.

    Args:
        image_rgb: (H, W, 3) uint8 image.
        box_xywh: (4,) person box in image pixels.
        keypoints: (K, 3) ``x, y, v`` in image pixels.
        input_hw: model input (h, w); stride: heatmap stride.
        augment: augmentation (None: plain crop, as at validation); ignored when
            ``pipeline`` is given.
        other: (image (H, W, 3) uint8 RGB, box (4,) xywh) of another training person, for
            the pasted-person and occluder augmentations.
        pipeline: the steps (default: those of ``augment``).

    Returns:
        dict with ``image`` (h, w, 3) uint8 RGB crop, ``heatmaps`` (h/s, w/s, K) float32,
        ``weights`` (K,) float32, ``keypoints`` (K, 2) float64 in crop pixels (after a flip,
        already left/right-swapped), ``matrix`` (2, 3) image -> crop affine, ``flipped`` bool,
        ``hidden`` (K,) bool (labelled joints an occluding step covered).
    """
    ctx = Context((int(input_hw[0]), int(input_hw[1])), int(stride), flip_pairs, upper_body,
                  sigma, padding)
    if pipeline is None:
        pipeline = Pipeline(steps_from_augment(augment if augment is not None else False))
    rng = rng if rng is not None else np.random.default_rng()
    return pipeline(ctx, image_rgb, box_xywh, keypoints, rng, other)
