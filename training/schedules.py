"""Learning-rate schedules (Keras ``LearningRateSchedule``s saved inside checkpoints)."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="evopose")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    ``lr(step) = peak * (step + 1) / warmup`` for ``step < warmup``, else
    ``min + (peak - min) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total -
    warmup)`` clipped to [0, 1]. ``step`` is the optimizer's iteration count (0-based).
    """

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0) -> None:
        if peak_lr <= 0 or total_steps < 1 or warmup_steps < 0 or min_lr < 0:
            raise ValueError(
                f"invalid schedule: peak_lr={peak_lr}, total_steps={total_steps}, "
                f"warmup_steps={warmup_steps}, min_lr={min_lr}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        warm_lr = self.peak_lr * (step + 1.0) / float(warm)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        t = ops.clip((step - float(self.warmup_steps)) / span, 0.0, 1.0)
        cos_lr = self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + ops.cos(math.pi * t))
        return ops.where(step < float(self.warmup_steps), warm_lr, cos_lr)

    def value(self, step: int) -> float:
        """The LR at ``step`` as a Python float (for logs)."""
        return float(ops.convert_to_numpy(self(step)))

    def get_config(self) -> dict:
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}
