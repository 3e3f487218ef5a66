"""What the sample steps share: the :class:`Context` of a batch set, the :class:`View` of one
person that the steps change, the :class:`Step` base class and the registry of step names
(:func:`register_step`, :data:`STEPS`).

The steps themselves: :mod:`~evopose_sdk.training.view_steps` (views on the image, the crop,
views on the crop), :mod:`~evopose_sdk.training.targets` (the human labels as heatmaps) and
:mod:`~evopose_sdk.training.teacher` (the teacher's); :mod:`~evopose_sdk.training.pipeline`
builds a pipeline from them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS
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
