"""Target steps: the human labels as the codec's heatmaps (:class:`HeatmapTargets`). The
teacher's targets are another target step, :class:`~evopose_sdk.training.teacher.TeacherTargets`.
"""

from __future__ import annotations

import numpy as np

from evopose_sdk.training.step import Step, View, register_step


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
