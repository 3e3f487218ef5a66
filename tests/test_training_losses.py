"""Training losses: the registry chosen by ``train.loss``, the OHKM loss, checkpoints."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training.losses import (
    LOSSES,
    HeatmapMSE,
    HeatmapOHKM,
    loss_from_config,
    make_loss,
)
from evopose_sdk.training.model import CUSTOM_OBJECTS


def _batch(k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    target = rng.random((3, 8, 6, k)).astype(np.float32)
    pred = rng.random((3, 8, 6, k)).astype(np.float32)
    w = (rng.random((3, k)) > 0.3).astype(np.float32)
    return HeatmapCodec.pack(target, w), pred, target, w


def test_ohkm_averages_each_samples_hardest_joints():
    y, pred, target, w = _batch()
    per_joint = (w[:, None, None, :] * (pred - target) ** 2).mean(axis=(1, 2))  # (N, K)
    top2 = np.sort(per_joint, axis=1)[:, -2:].mean(axis=1).mean()
    assert float(HeatmapOHKM(top_k=2)(y, pred)) == pytest.approx(top2, rel=1e-5)
    # top_k >= K is the plain weighted MSE
    assert float(HeatmapOHKM(top_k=5)(y, pred)) == pytest.approx(float(HeatmapMSE()(y, pred)),
                                                                 rel=1e-5)


@pytest.mark.parametrize("name, options, error", [
    ("heatmap_mse", None, None),
    ("heatmap_ohkm", {"top_k": 3}, None),
    ("heatmap_mes", None, "must be one of"),
    ("heatmap_ohkm", {"topk": 3}, r"not options of heatmap_ohkm \(accepted: \['top_k'\]\)"),
    ("heatmap_ohkm", {"top_k": 0}, "top_k must be >= 1"),
])
def test_loss_chosen_by_config(name, options, error):
    cfg = cfgmod.load_config("xs", [f"train.loss={name}"])
    cfg["train"]["loss_options"] = options
    if error:
        with pytest.raises(cfgmod.ConfigError, match=error):
            loss_from_config(cfg)
        return
    loss = loss_from_config(cfg)
    assert isinstance(loss, LOSSES[name])
    assert type(make_loss(name, options)) is type(loss)


def test_every_registered_loss_reloads_from_a_checkpoint(tmp_path):
    assert cfgmod.load_config("xs")["train"]["loss"] == "heatmap_mse"
    for name, cls in LOSSES.items():
        assert CUSTOM_OBJECTS[cls.__name__] is cls, name
        inp = keras.Input((8, 6, 3))
        model = keras.Model(inp, keras.layers.Conv2D(5, 1)(inp))
        model.compile(optimizer="adam", loss=make_loss(name))
        path = tmp_path / f"{name}.keras"
        model.save(path)
        again = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS)
        assert type(again.loss) is cls and again.loss.get_config() == model.loss.get_config()
