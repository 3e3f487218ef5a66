"""Training losses, chosen by the config's ``train.loss`` (a name in :data:`LOSSES`).

A loss is a ``keras.losses.Loss`` called as ``loss(y_true, y_pred)`` with ``y_true`` the
packed targets of :meth:`evopose_sdk.codec.HeatmapCodec.pack` and ``y_pred`` the
model's (N, H, W, K) heatmaps; it returns the (N,) per-sample loss from ``call``.

Adding a loss: write its class here (registered with
``@keras.saving.register_keras_serializable(package="evopose")`` so checkpoints reload, with
its constructor arguments in ``get_config``), add it to :data:`LOSSES`, and train with
``--set train.loss=<name>`` (constructor arguments: ``train.loss_options={...}``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import keras
from keras import ops

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.training.config import ConfigError


@keras.saving.register_keras_serializable(package="evopose")
class HeatmapMSE(keras.losses.Loss):
    """Mean squared heatmap error with per-joint target weights.

    ``y_true`` is (N, H, W, 2K): target heatmaps then per-joint weights broadcast over H, W
    (:meth:`evopose_sdk.codec.HeatmapCodec.pack`, read back with its ``split``); ``y_pred`` is
    (N, H, W, K). The per-sample loss is ``mean_{h,w,k} w_k (pred - target)^2`` in float32.
    """

    def __init__(self, name: str = "heatmap_mse", reduction: str = "sum_over_batch_size",
                 **kwargs) -> None:
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        k = y_pred.shape[-1]
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        target, weight = HeatmapCodec.split(y_true, k)
        return ops.mean(weight * ops.square(y_pred - target), axis=(1, 2, 3))

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="evopose")
class HeatmapOHKM(HeatmapMSE):
    """Weighted heatmap MSE over each sample's ``top_k`` hardest joints (online hard
    keypoint mining, Chen et al. 2018, CPN).

    Per joint ``e_k = w_k mean_{h,w} (pred - target)^2``; the per-sample loss is the mean of
    the ``top_k`` largest ``e_k`` (``top_k >= K``: :class:`HeatmapMSE`).
    """

    def __init__(self, top_k: int = 8, name: str = "heatmap_ohkm",
                 reduction: str = "sum_over_batch_size", **kwargs) -> None:
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1; received {top_k}")
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.top_k = int(top_k)

    def call(self, y_true, y_pred):
        k = y_pred.shape[-1]
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        target, weight = HeatmapCodec.split(y_true, k)
        per_joint = ops.mean(weight * ops.square(y_pred - target), axis=(1, 2))  # (N, K)
        hardest, _ = ops.top_k(per_joint, min(self.top_k, k))
        return ops.mean(hardest, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "top_k": self.top_k}


#: ``train.loss`` name -> loss class.
LOSSES: dict[str, type[keras.losses.Loss]] = {
    "heatmap_mse": HeatmapMSE,
    "heatmap_ohkm": HeatmapOHKM,
}
DEFAULT_LOSS = "heatmap_mse"


def make_loss(name: str = DEFAULT_LOSS, options: Mapping | None = None) -> keras.losses.Loss:
    """The loss ``LOSSES[name](**options)``; an unknown name or option raises ConfigError."""
    if name not in LOSSES:
        raise ConfigError(f"train.loss must be one of {sorted(LOSSES)}; received {name!r}")
    cls = LOSSES[name]
    options = dict(options or {})
    accepted = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "name", "reduction", "kwargs", "dtype")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"train.loss_options {unknown} are not options of {name} "
                          f"(accepted: {accepted})")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"train.loss_options for {name}: {exc}") from exc


def loss_from_config(cfg: Mapping) -> keras.losses.Loss:
    """The loss of a training config (``train.loss``, ``train.loss_options``)."""
    t = cfg["train"]
    return make_loss(t.get("loss") or DEFAULT_LOSS, t.get("loss_options"))


def heatmap_loss_metric() -> keras.metrics.Metric:
    """The heatmap term of the loss alone (``loss`` also holds the L2 weight decay)."""
    return keras.metrics.MeanMetricWrapper(heatmap_mse, name="heatmap_loss")


@keras.saving.register_keras_serializable(package="evopose")
def heatmap_mse(y_true, y_pred):
    """Per-sample weighted heatmap MSE (the function behind :class:`HeatmapMSE`)."""
    return HeatmapMSE().call(y_true, y_pred)

