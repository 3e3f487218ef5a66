"""Quantisation-aware fine-tuning: train through simulated TFLite int8 activations.

Post-training int8 of EvoPose2D-S (swish, squeeze-excitation, per-tensor activation
ranges) moves keypoints by a pixel or more: a few conv + batch-norm outputs span +-100
while most channels stay within +-10. :func:`quantize_aware` inserts a :class:`FakeQuant`
layer after every layer whose output TFLite stores as an int8 tensor (batch norm = the
folded conv, activations, squeeze means, biased convs, multiplies, adds, the input
normalisation), each with a fixed range chosen on real crops by the export stage's rule
(:func:`evopose_sdk.training.int8_ranges.mse_range`). Fine-tuning that model teaches the weights
to live with 8-bit activations; :func:`strip_fake_quant` returns the plain network (same
weights), which the export stage then quantises with the same range rule.

Measured effect: see ``recipes/evopose2d_s256_qat.json`` and the model card.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import keras
import numpy as np
from keras import layers, ops

from evopose_sdk.training.int8_ranges import mse_range, subsample, uint8_grid

log = logging.getLogger(__name__)

#: layers whose output is an int8 tensor in the converted TFLite model
_QUANTISED = (layers.BatchNormalization, layers.Activation, layers.GlobalAveragePooling2D,
              layers.Multiply, layers.Add, layers.Normalization)


@keras.saving.register_keras_serializable(package="evopose")
class FakeQuant(layers.Layer):
    """Round trip through uint8 over a fixed [lo, hi], as TFLite stores the tensor.

    Values are clipped to the range (zero gradient outside), rounded to the 256 levels with
    a straight-through gradient inside. ``lo``/``hi`` are nudged so that 0 is a level.
    Shape-preserving: (N, ...) -> (N, ...).
    """

    def __init__(self, lo: float, hi: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lo, self.hi = float(lo), float(hi)
        self.scale, zero = uint8_grid(lo, hi)
        self.scale = self.scale or 1e-8  # an all-zero tensor: every value maps to 0
        self._lo = -zero * self.scale
        self._hi = self._lo + 255.0 * self.scale

    def call(self, x):
        clipped = ops.clip(x, self._lo, self._hi)
        q = ops.round((clipped - self._lo) / self.scale) * self.scale + self._lo
        return clipped + ops.stop_gradient(q - clipped)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "lo": self.lo, "hi": self.hi}


def _quantised(layer: layers.Layer) -> bool:
    return isinstance(layer, _QUANTISED) or (
        type(layer) in (layers.Conv2D, layers.Conv2DTranspose) and layer.use_bias)


def _feeds_swish(model: keras.Model) -> set[str]:
    """Names of layers whose output goes only into swish activations."""
    consumers: dict[str, list[layers.Layer]] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:  # noqa: SLF001 - Keras 3 functional graph
            for parent in node.parent_nodes:
                consumers.setdefault(parent.operation.name, []).append(layer)
    out = set()
    for name, cons in consumers.items():
        if cons and all(isinstance(c, layers.Activation)
                        and c.get_config().get("activation") in ("swish", "silu")
                        for c in cons):
            out.add(name)
    return out


def activation_ranges(model: keras.Model, images: np.ndarray, batch_size: int = 8,
                      sample: int = 200_000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Range per quantised layer output, by :func:`mse_range` over ``images``.

    Args:
        images: (N, H, W, 3) RGB 0-255 crops, as the model takes them.
    Returns:
        {layer name: (lo, hi)} for every layer :func:`quantize_aware` follows with FakeQuant.
    """
    targets = [layer for layer in model.layers if _quantised(layer)]
    if not targets:
        raise ValueError(f"{model.name} has no layer whose output TFLite quantises")
    probe = keras.Model(model.inputs, [layer.output for layer in targets])
    rng = np.random.default_rng(seed)
    per = max(sample // max(len(images) // batch_size, 1), 1000)
    samples: dict[str, list[np.ndarray]] = {layer.name: [] for layer in targets}
    for i in range(0, len(images), batch_size):
        outs = probe([np.asarray(images[i:i + batch_size], np.float32)], training=False)
        for layer, o in zip(targets, outs, strict=True):
            samples[layer.name].append(subsample(ops.convert_to_numpy(o), per, rng))
    swish_in = _feeds_swish(model)
    return {name: mse_range(np.concatenate(v), name in swish_in) for name, v in samples.items()}


def quantize_aware(model: keras.Model, ranges: Mapping[str, tuple[float, float]],
                   freeze_batch_norm: bool = True) -> keras.Model:
    """The same network (shared weights) with a FakeQuant after every layer in ``ranges``.

    Args:
        ranges: from :func:`activation_ranges` (layer name -> (lo, hi)).
        freeze_batch_norm: keep batch-norm statistics and affine terms fixed (inference
            mode), as they are folded into the convs whose outputs the ranges describe.
    """
    if freeze_batch_norm:
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False

    def call(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in ranges:
            lo, hi = ranges[layer.name]
            out = FakeQuant(lo, hi, name=f"{layer.name}_fq")(out)
        return out

    return keras.models.clone_model(model, clone_function=lambda layer: layer,
                                    call_function=call)


def has_fake_quant(model: keras.Model) -> bool:
    """Whether ``model`` holds FakeQuant layers (a quantisation-aware checkpoint)."""
    return any(isinstance(layer, FakeQuant) for layer in model.layers)


def strip_fake_quant(model: keras.Model) -> keras.Model:
    """The plain network of a quantisation-aware model (shared weights, batch norm trainable)."""

    def call(layer, *args, **kwargs):
        if isinstance(layer, FakeQuant):
            return args[0]
        return layer(*args, **kwargs)

    plain = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                     call_function=call)
    for layer in plain.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = True
    return plain
