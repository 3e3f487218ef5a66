"""The training sample pipeline: a list of named steps, each a small class.

A training sample is a :class:`View` of one person that the steps change in order:

    load (the batch loader) -> views on the image -> crop -> views on the crop -> targets

The config names the steps in ``data.pipeline``, in order, as ``{"step": NAME, ...options}``:

    "pipeline": [{"step": "truncate", "prob": 0.3}, {"step": "random_affine"},
                 {"step": "crop"}, {"step": "occlude", "prob": 0.25},
                 {"step": "heatmap_targets"}, {"step": "teacher_targets", "merge": "fill"}]

Without ``data.pipeline`` the steps come from ``data.augment`` (:func:`steps_from_augment`),
in the order every recipe before the list existed used, so those recipes draw the same
samples bitwise (tests/test_sample_pipeline.py).

Where the parts live: the :class:`View` a step changes, the :class:`Step` base class and the
registry (:func:`register_step`, :data:`STEPS`) in :mod:`evopose_sdk.training.step`; the
steps that change the view in :mod:`evopose_sdk.training.view_steps`; the target steps in
:mod:`evopose_sdk.training.targets` and :mod:`evopose_sdk.training.teacher`. This module
builds a :class:`Pipeline` from the config, and importing it registers every step. All those
names can still be imported from here.

Adding a step: a class with ``name``, options as constructor keywords (with defaults),
``__call__(view, rng)`` that changes the view and draws only from ``rng``; register it with
:func:`register_step` in the module of its kind (imported here, so configs find it). A new
target source is a step after ``crop`` that sets or merges ``view.heatmaps`` /
``view.weights`` (see :class:`TeacherTargets` in :mod:`evopose_sdk.training.teacher`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# importing the step modules registers their steps (configs name them in data.pipeline)
from evopose_sdk.training import teacher as _teacher  # noqa: F401
from evopose_sdk.training.sources import DataError
from evopose_sdk.training.step import STEPS, Context, ProbStep, Step, View, register_step
from evopose_sdk.training.targets import HeatmapTargets
from evopose_sdk.training.view_steps import (
    ColorJitter,
    Crop,
    Degrade,
    HalfBody,
    Occlude,
    PastePerson,
    RandomAffine,
    Truncate,
    compose_affine,
    flip_matrix,
)

__all__ = ["STEPS", "ColorJitter", "Context", "Crop", "Degrade", "HalfBody", "HeatmapTargets",
           "Occlude", "PastePerson", "Pipeline", "ProbStep", "RandomAffine", "Step", "Truncate",
           "View", "compose_affine", "flip_matrix", "make_step", "register_step",
           "steps_from_augment"]


def steps_from_augment(augment: Any) -> list[Step]:
    """The steps of an ``AugmentConfig`` (or its dict): the fixed order every recipe used
    before ``data.pipeline`` existed. Disabled augmentation: crop and targets only."""
    from evopose_sdk.training.samples import AugmentConfig  # noqa: PLC0415 (samples uses us)

    a = AugmentConfig.from_any(augment)
    if not a.enabled:
        return [Crop(), HeatmapTargets()]
    return [Truncate(a.truncate_prob),
            HalfBody(a.half_body_prob, a.half_body_min_joints),
            RandomAffine(a.scale_factor, a.rotation, a.rotation_prob, a.flip_prob),
            Crop(),
            PastePerson(a.paste_person_prob),
            Occlude(a.occlude_prob),
            ColorJitter(a.color_jitter),
            Degrade(a.blur_prob, a.lowres_prob),
            HeatmapTargets()]


def make_step(spec: Mapping | Step) -> Step:
    """A step from ``{"step": NAME, **options}``; unknown names or options raise DataError."""
    if isinstance(spec, Step):
        return spec
    if not isinstance(spec, Mapping) or "step" not in spec:
        raise DataError(f"a pipeline step is {{'step': NAME, ...options}}; received {spec!r}")
    name = spec["step"]
    if name not in STEPS:
        raise DataError(f"unknown pipeline step {name!r}; known: {sorted(STEPS)}")
    cls = STEPS[name]
    options = {k: v for k, v in spec.items() if k != "step"}
    accepted = cls.option_names()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"pipeline step {name!r} has no options {unknown} (accepted: {accepted})")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise DataError(f"pipeline step {name!r}: {exc}") from exc


class Pipeline:
    """Steps run in order on a :class:`View`; the result is a training sample dict."""

    def __init__(self, steps: Sequence[Step | Mapping]) -> None:
        self.steps = [make_step(s) for s in steps]
        names = [s.name for s in self.steps]
        if "crop" not in names:
            raise DataError(f"a sample pipeline needs a 'crop' step; received {names}")
        if not any(s.makes_targets for s in self.steps):
            raise DataError(f"a sample pipeline needs a target step; received {names}")

    @classmethod
    def from_config(cls, pipeline: Sequence | None, augment: Any = None) -> Pipeline:
        """``data.pipeline`` when given, else the steps of ``data.augment``."""
        if pipeline:
            return cls(pipeline)
        return cls(steps_from_augment(augment))

    @property
    def needs_other(self) -> bool:
        """Whether samples need a second training person (pasted people, occluders)."""
        return any(s.uses_other and s.active for s in self.steps)

    def to_config(self) -> list[dict]:
        return [s.to_config() for s in self.steps]

    def __call__(self, ctx: Context, image_rgb: np.ndarray, box_xywh: np.ndarray,
                 keypoints: np.ndarray, rng: np.random.Generator,
                 other: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
        """One sample: ``image`` (h, w, 3) uint8, ``heatmaps`` (h/s, w/s, K) float32,
        ``weights`` (K,) float32, ``keypoints`` (K, 2) crop pixels, ``matrix`` (2, 3),
        ``flipped`` bool, ``hidden`` (K,) bool."""
        x, y, bw, bh = np.asarray(box_xywh, np.float64)
        view = View(ctx, image_rgb, np.array([x, y, x + bw, y + bh]),
                    np.asarray(keypoints, np.float64), other=other, padding=ctx.padding)
        for step in self.steps:
            step(view, rng)
        return {"image": view.crop, "heatmaps": view.heatmaps, "weights": view.weights,
                "keypoints": view.kp_crop, "matrix": view.matrix, "flipped": view.flip,
                "hidden": view.hidden}
