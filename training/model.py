"""A training config's model: build, compile, and the custom objects its checkpoints need."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import quantize
from evopose_sdk.training.losses import LOSSES, HeatmapMSE, heatmap_loss_metric, heatmap_mse
from evopose_sdk.training.network import build_evopose, get_spec
from evopose_sdk.training.schedules import WarmupCosineDecay


def model_geometry(cfg: Mapping) -> tuple[list, tuple[int, int], str]:
    """(genotype, input_hw, name) of the config's model section."""
    m = cfg["model"]
    spec = get_spec(m["size"]) if m.get("size") else None
    genotype = m.get("genotype") or (spec.genotype if spec else None)
    input_hw = m.get("input_hw") or (spec.input_hw if spec else None)
    if genotype is None or input_hw is None:
        raise cfgmod.ConfigError("model needs a size (XS/S/M/L) or a genotype and input_hw")
    return [list(b) for b in genotype], (int(input_hw[0]), int(input_hw[1])), str(cfg["name"])


def build_model(cfg: Mapping, num_keypoints: int) -> keras.Model:
    """Build the config's network (with its L2 weight decay) in the current dtype policy."""
    genotype, input_hw, name = model_geometry(cfg)
    m = cfg["model"]
    return build_evopose(genotype, input_hw, num_keypoints, head_channels=m["head_channels"],
                         activation=m["activation"], drop_connect_rate=m["drop_connect_rate"],
                         weight_decay=float(m["weight_decay"] or 0.0),
                         compound_scaling=bool(m.get("compound_scaling", True)),
                         name=name.replace("-", "_"))


def compile_model(model: keras.Model, schedule: WarmupCosineDecay, jit_compile="auto",
                  loss: keras.losses.Loss | None = None) -> None:
    """Compile for training: Adam on ``schedule``, ``loss`` (default :class:`HeatmapMSE`) and
    the plain heatmap MSE as the ``heatmap_loss`` metric."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule),
                  loss=loss if loss is not None else HeatmapMSE(),
                  metrics=[heatmap_loss_metric()], jit_compile=jit_compile)


#: What ``keras.saving.load_model`` needs for a training checkpoint (every loss of LOSSES).
CUSTOM_OBJECTS = {**{cls.__name__: cls for cls in LOSSES.values()},
                  "WarmupCosineDecay": WarmupCosineDecay, "heatmap_mse": heatmap_mse,
                  "FakeQuant": quantize.FakeQuant}


def heatmap_stride_of(model: keras.Model) -> int:
    """Input height / heatmap height of a built model."""
    return int(model.input_shape[1]) // int(model.output_shape[1])
