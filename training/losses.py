"""Training losses, chosen by the config's ``train.loss``.

A loss is a ``keras.losses.Loss`` called as ``loss(y_true, y_pred)`` with ``y_true`` the
packed targets of :func:`evopose_sdk.training.batches.pack_targets` and ``y_pred`` the
model's (N, H, W, K) heatmaps.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="evopose")
class HeatmapMSE(keras.losses.Loss):
    """Mean squared heatmap error with per-joint target weights.

    ``y_true`` is (N, H, W, 2K): target heatmaps then per-joint weights broadcast over H, W
    (see :func:`evopose_sdk.training.batches.pack_targets`); ``y_pred`` is (N, H, W, K). The
    per-sample loss is ``mean_{h,w,k} w_k (pred - target)^2`` in float32.
    """

    def __init__(self, name: str = "heatmap_mse", reduction: str = "sum_over_batch_size",
                 **kwargs) -> None:
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        k = y_pred.shape[-1]
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        target, weight = y_true[..., :k], y_true[..., k:]
        return ops.mean(weight * ops.square(y_pred - target), axis=(1, 2, 3))

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


def heatmap_loss_metric() -> keras.metrics.Metric:
    """The heatmap term of the loss alone (``loss`` also holds the L2 weight decay)."""
    return keras.metrics.MeanMetricWrapper(heatmap_mse, name="heatmap_loss")


@keras.saving.register_keras_serializable(package="evopose")
def heatmap_mse(y_true, y_pred):
    """Per-sample weighted heatmap MSE (the function behind :class:`HeatmapMSE`)."""
    return HeatmapMSE().call(y_true, y_pred)

