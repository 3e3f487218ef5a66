"""The teacher as a target source: MoveNet Thunder run on the augmented view itself.

:class:`TeacherTargets` is a pipeline step (``{"step": "teacher_targets", ...}``, after the
views on the crop). It runs the teacher (:class:`~evopose_sdk.training.pseudo_labeller.
MoveNetSinglePose`) on the very crop the student is trained on, after truncation, pasted
people, occluders and blur, so a joint hidden by the view gets the teacher's estimate of
where it is in that view (or no weight), never a label that the view contradicts. It runs
in the data workers (the interpreter is opened lazily in each process).

Merge rules (``merge``):

* ``fill``: the human label where it exists and no view step covered it (weight 1); every
  other joint takes the teacher's keypoint when its score is at least ``min_score``, with
  weight ``score`` (``soft=True``) or 1.
* ``teacher``: the teacher's keypoints alone, same threshold and weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evopose_sdk.training.sources import DataError
from evopose_sdk.training.step import Step, View, register_step

#: Where ``bash ../shared/peers/get_peers.sh`` builds the teacher; ``EVOPOSE_TEACHER`` or the
#: step's ``model`` option names another file.
DEFAULT_TEACHER = "/tmp/peers/models/movenet_thunder.tflite"
MERGES = ("fill", "teacher")


@register_step
class TeacherTargets(Step):
    """Targets from the teacher on the augmented view, merged with the human labels.

    Options: ``model`` (TFLite file; default ``$EVOPOSE_TEACHER`` or :data:`DEFAULT_TEACHER`),
    ``merge`` (one of :data:`MERGES`), ``min_score`` (teacher joints below it get no weight),
    ``soft`` (weight a teacher joint by its score), ``flip`` (average a mirrored teacher pass,
    twice the cost), ``threads`` (interpreter threads per worker).
    """

    name = "teacher_targets"
    makes_targets = True

    def __init__(self, model: str | None = None, merge: str = "fill", min_score: float = 0.3,
                 soft: bool = True, flip: bool = False, threads: int = 1) -> None:
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}; received {merge!r}")
        self.model = model
        self.merge = merge
        self.min_score = float(min_score)
        self.soft = bool(soft)
        self.flip = bool(flip)
        self.threads = int(threads)
        self._teacher = None

    @property
    def path(self) -> Path:
        return Path(self.model or os.environ.get("EVOPOSE_TEACHER") or DEFAULT_TEACHER)

    def teacher(self):
        """The interpreter, opened on first use in this process."""
        if self._teacher is None:
            if not self.path.is_file():
                raise DataError(f"teacher model {self.path} not found: build it with "
                                "`bash ../shared/peers/get_peers.sh` or name it with the step's "
                                "'model' option or EVOPOSE_TEACHER")
            from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose  # noqa: PLC0415

            self._teacher = MoveNetSinglePose(self.path, self.threads)
        return self._teacher

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_teacher": None}  # each worker opens its own

    def merge_targets(self, view: View, teacher_kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (K, 2) crop pixels, per-joint weights (K,)) of the merged targets."""
        k = view.kp_crop.shape[0]
        if teacher_kp.shape[0] != k:
            raise DataError(f"the teacher gives {teacher_kp.shape[0]} keypoints; this keypoint "
                            f"set has {k}: teacher_targets needs the 17 COCO keypoints")
        score = teacher_kp[:, 2]
        t_ok = score >= self.min_score
        t_w = np.where(t_ok, score if self.soft else 1.0, 0.0)
        if self.merge == "teacher":
            return teacher_kp[:, :2].copy(), t_w.astype(np.float32)
        human = view.valid & ~view.hidden
        kp = np.where(human[:, None], view.kp_crop, teacher_kp[:, :2])
        w = np.where(human, 1.0, t_w)
        return kp, w.astype(np.float32)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        tk = self.teacher().on_crop(view.crop, flip=self.flip)
        kp, w = self.merge_targets(view, tk)
        view.heatmaps, inside = view.ctx.codec.encode(kp, w > 0)
        view.weights = inside * w
        view.extras["teacher"] = tk
