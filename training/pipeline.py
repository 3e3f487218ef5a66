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

Adding a step: a class here with ``name``, options as constructor keywords (with defaults),
``__call__(view, rng)`` that changes the view and draws only from ``rng``; register it with
:func:`register_step`. A new target source is a step after ``crop`` that sets or merges
``view.heatmaps`` / ``view.weights`` (see :class:`TeacherTargets` in
:mod:`evopose_sdk.training.teacher`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, flip_permutation
from evopose_sdk.training import augment as augmod
from evopose_sdk.training.sources import DataError


@dataclass
class Context:
    """What every sample of a batch set shares: model geometry and the keypoint set."""

    input_hw: tuple[int, int]
    stride: int
    flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS
    upper_body: np.ndarray | None = None
    sigma: float | None = None
    padding: float = geometry.DEFAULT_PADDING

    @property
    def codec(self) -> HeatmapCodec:
        return HeatmapCodec(self.input_hw, self.stride, self.sigma)


@dataclass
class View:
    """One person as the steps see it.

    Before ``crop``: ``image`` (H, W, 3) uint8 RGB, ``box`` (4,) xyxy and ``keypoints``
    (K, 3) x, y, v in image pixels, and the crop's parameters (``padding``, ``scale``,
    ``rotation`` degrees, ``flip``). After ``crop``: ``crop`` (h, w, 3) uint8,
    ``matrix`` (2, 3) image -> crop, ``kp_crop`` (K, 2) crop pixels (left/right swapped after
    a flip), ``valid`` (K,) bool and ``hidden`` (K,) bool (joints a view step covered).
    Targets: ``heatmaps`` (h/s, w/s, K) float32 and ``weights`` (K,) float32.
    """

    ctx: Context
    image: np.ndarray
    box: np.ndarray
    keypoints: np.ndarray
    other: tuple[np.ndarray, np.ndarray] | None = None
    padding: float = geometry.DEFAULT_PADDING
    scale: float = 1.0
    rotation: float = 0.0
    flip: bool = False
    truncated: bool = False
    crop: np.ndarray | None = None
    matrix: np.ndarray | None = None
    kp_crop: np.ndarray | None = None
    valid: np.ndarray | None = None
    hidden: np.ndarray | None = None
    heatmaps: np.ndarray | None = None
    weights: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def need_crop(self, step: str) -> None:
        if self.crop is None:
            raise DataError(f"pipeline step {step!r} works on the crop: put it after 'crop'")

    def cover(self, alpha: np.ndarray | None) -> None:
        """Mark the labelled joints under ``alpha`` ((h, w) float, > 0.5 covered) hidden."""
        if alpha is None or self.kp_crop is None:
            return
        h, w = alpha.shape
        xy = np.round(self.kp_crop).astype(np.int64)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        under = np.zeros(len(xy), bool)
        under[inside] = alpha[xy[inside, 1], xy[inside, 0]] > 0.5
        self.hidden = self.hidden | (under & self.valid)


class Step:
    """A pipeline step. Subclasses set ``name`` and take their options as keywords."""

    name: ClassVar[str] = ""
    #: Whether the step needs a second training person (``view.other``) when active.
    uses_other: ClassVar[bool] = False
    #: Whether the step sets the targets (``view.heatmaps``, ``view.weights``).
    makes_targets: ClassVar[bool] = False

    @property
    def active(self) -> bool:
        """False when the step can never change a sample (probability 0)."""
        return True

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> list[str]:
        """The step's options: its constructor's keyword parameters."""
        if cls.__init__ is object.__init__:
            return []
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def options(self) -> dict:
        return {p: getattr(self, p) for p in self.option_names()}

    def to_config(self) -> dict:
        return {"step": self.name, **self.options()}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


STEPS: dict[str, type[Step]] = {}


def register_step(cls: type[Step]) -> type[Step]:
    """Class decorator: make ``cls`` available as ``{"step": cls.name}`` in configs."""
    STEPS[cls.name] = cls
    return cls


class ProbStep(Step):
    """A step applied with probability ``prob`` (inactive at 0)."""

    def __init__(self, prob: float = 0.25) -> None:
        self.prob = float(prob)

    @property
    def active(self) -> bool:
        return self.prob > 0


# ------------------------------------------------------------------ views on the image

@register_step
class Truncate(ProbStep):
    """The frame cuts through the person (:func:`augment.truncate`), with ``prob``."""

    name = "truncate"

    def __init__(self, prob: float = 0.3) -> None:
        super().__init__(prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        if self.prob > 0 and rng.random() < self.prob:
            x1, y1, x2, y2 = view.box
            cut = augmod.truncate(view.image, np.array([x1, y1, x2 - x1, y2 - y1]),
                                  view.keypoints, rng)
            if cut is not None:
                view.image, view.box, view.keypoints = cut
                view.truncated = True


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


@register_step
class HalfBody(Step):
    """Crop to the upper or lower body (padding 1.5) when more than ``min_joints`` joints
    are labelled, with ``prob``; never after a truncation."""

    name = "half_body"

    def __init__(self, prob: float = 0.3, min_joints: int = 8) -> None:
        self.prob = float(prob)
        self.min_joints = int(min_joints)

    @property
    def active(self) -> bool:
        return self.prob > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        upper = view.ctx.upper_body
        if (not view.truncated and upper is not None and len(upper) and self.prob > 0
                and int((view.keypoints[:, 2] > 0).sum()) > self.min_joints
                and rng.random() < self.prob):
            hb = _half_body_box(view.keypoints, upper, rng)
            if hb is not None:
                view.box, view.padding = hb, 1.5


@register_step
class RandomAffine(Step):
    """Crop scale ``1 + U(-scale_factor, scale_factor)``, rotation ``U(-rotation, rotation)``
    degrees with ``rotation_prob``, horizontal flip with ``flip_prob`` (applied by ``crop``)."""

    name = "random_affine"

    def __init__(self, scale_factor: float = 0.3, rotation: float = 40.0,
                 rotation_prob: float = 0.6, flip_prob: float = 0.5) -> None:
        self.scale_factor = float(scale_factor)
        self.rotation = float(rotation)
        self.rotation_prob = float(rotation_prob)
        self.flip_prob = float(flip_prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.scale = 1.0 + rng.uniform(-self.scale_factor, self.scale_factor)
        if rng.random() < self.rotation_prob:
            view.rotation = rng.uniform(-self.rotation, self.rotation)
        view.flip = rng.random() < self.flip_prob


# ------------------------------------------------------------------ the crop

def flip_matrix(width: int) -> np.ndarray:
    """(2, 3) affine of a horizontal mirror of a ``width``-pixel crop (pixel centres)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of ``outer(inner(x))``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


@register_step
class Crop(Step):
    """Warp the box (at the model's aspect ratio, padded) to the model input; keypoints
    follow the same affine; a flip swaps left and right."""

    name = "crop"

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        ctx = view.ctx
        h, w = ctx.input_hw
        center, size = geometry.box_to_center_size(view.box, w / h, view.padding)
        matrix = geometry.crop_affine(center, size * view.scale, (h, w), view.rotation)
        if view.flip:
            matrix = compose_affine(flip_matrix(w), matrix)
        view.crop = geometry.warp_crop(view.image, matrix, (h, w))
        kp_crop = geometry.apply_affine(view.keypoints[:, :2], matrix)
        valid = view.keypoints[:, 2] > 0
        if view.flip:
            perm = flip_permutation(view.keypoints.shape[0], ctx.flip_pairs)
            kp_crop, valid = kp_crop[perm], valid[perm]
        view.matrix, view.kp_crop, view.valid = matrix, kp_crop, valid
        view.hidden = np.zeros_like(valid)


# ------------------------------------------------------------------ views on the crop

@register_step
class PastePerson(ProbStep):
    """Another training person pasted in front (:func:`augment.paste_person`), with
    ``prob``; the labelled joints it covers are marked hidden."""

    name = "paste_person"
    uses_other = True

    def __init__(self, prob: float = 0.25) -> None:
        super().__init__(prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if view.other is not None and self.prob > 0 and rng.random() < self.prob:
            alpha = np.zeros(view.crop.shape[:2], np.float32)
            view.crop = augmod.paste_person(view.crop, view.other[0], view.other[1], rng,
                                            alpha_out=alpha)
            view.cover(alpha)


@register_step
class Occlude(ProbStep):
    """Patches of another photo over the crop (:func:`augment.occlude`), with ``prob``;
    ``count`` patches at most; the labelled joints they cover are marked hidden."""

    name = "occlude"
    uses_other = True

    def __init__(self, prob: float = 0.25, count: int = 2) -> None:
        super().__init__(prob)
        self.count = int(count)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if view.other is not None and self.prob > 0 and rng.random() < self.prob:
            alpha = np.zeros(view.crop.shape[:2], np.float32)
            view.crop = augmod.occlude(view.crop, view.other[0], rng, count=self.count,
                                       alpha_out=alpha)
            view.cover(alpha)


@register_step
class ColorJitter(Step):
    """Brightness, contrast and saturation factors drawn from ``1 + U(-amount, amount)``."""

    name = "color_jitter"

    def __init__(self, amount: float = 0.2) -> None:
        self.amount = float(amount)

    @property
    def active(self) -> bool:
        return self.amount > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if self.amount <= 0:
            return
        img = view.crop.astype(np.float32)
        b, c, s = 1.0 + rng.uniform(-self.amount, self.amount, size=3)
        img = img * b
        mean = img.mean()
        img = (img - mean) * c + mean
        gray = img.mean(axis=2, keepdims=True)
        img = (img - gray) * s + gray
        view.crop = np.clip(img, 0, 255).astype(np.uint8)


@register_step
class Degrade(Step):
    """A low-resolution round trip with ``lowres_prob``, else blur with ``blur_prob``
    (:func:`augment.degrade`); one draw decides."""

    name = "degrade"

    def __init__(self, blur_prob: float = 0.1, lowres_prob: float = 0.1) -> None:
        self.blur_prob = float(blur_prob)
        self.lowres_prob = float(lowres_prob)

    @property
    def active(self) -> bool:
        return self.blur_prob > 0 or self.lowres_prob > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if not self.active:
            return
        r = rng.random()
        if r < self.lowres_prob:
            view.crop = augmod.degrade(view.crop, rng, lowres=True)
        elif r < self.lowres_prob + self.blur_prob:
            view.crop = augmod.degrade(view.crop, rng, lowres=False)


# ------------------------------------------------------------------ targets

@register_step
class HeatmapTargets(Step):
    """The human labels as the codec's Gaussian heatmaps, weight 1 per labelled joint inside
    the heatmap (:meth:`evopose_sdk.codec.HeatmapCodec.encode`). ``drop_hidden``: joints a
    view step covered get weight 0 (a later target source may fill them)."""

    name = "heatmap_targets"
    makes_targets = True

    def __init__(self, drop_hidden: bool = False) -> None:
        self.drop_hidden = bool(drop_hidden)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        valid = view.valid & ~view.hidden if self.drop_hidden else view.valid
        view.heatmaps, view.weights = view.ctx.codec.encode(view.kp_crop, valid)


# ------------------------------------------------------------------ building pipelines

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



# the teacher target source registers itself (it imports this module)
from evopose_sdk.training import teacher as _teacher  # noqa: E402, F401
