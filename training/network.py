"""The EvoPose2D network family as a Keras 3, backend-agnostic builder.

Layer names follow the original EvoPose2D code (``stem_conv``, ``block1a_expand_conv``, ...,
``head_block1_conv``, ``final_conv``), so the authors' checkpoints load by name and weight
transfer between parent and child works by name.

Model contract (DESIGN.md): input ``image`` NHWC float32 RGB 0-255 with ImageNet
normalisation baked in as the ``input_normalization`` layer; output NHWC heatmaps
``(N, H/s, W/s, K)``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import keras
from keras import layers

from evopose_sdk.training import genotype as gt

log = logging.getLogger(__name__)

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)



# Initializers are made per layer, at build time: an instance made at import draws its seed
# before ``keras.utils.set_random_seed`` runs, so two processes with the same seed would start
# from different weights (and one shared instance gives equal-shaped layers equal weights).
def conv_kernel_initializer() -> keras.initializers.Initializer:
    """He-style truncated normal (fan out), as EfficientNet's convolutions."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out",
                                              distribution="truncated_normal")


def final_kernel_initializer() -> keras.initializers.Initializer:
    """Normal with std 0.001 for the heatmap layer (as SimpleBaseline's final layer), so an
    untrained net predicts empty heatmaps instead of O(1) noise that training must unlearn."""
    return keras.initializers.RandomNormal(stddev=0.001)

#: Fixed per-stage settings of the MBConv blocks (EfficientNet-B0).
EXPAND_RATIOS = (1, 6, 6, 6, 6, 6, 6)
SE_RATIO = 0.25


@dataclass(frozen=True)
class ModelSpec:
    """A named member of the family: genotype and input size (h, w)."""

    name: str
    genotype: tuple[tuple[int, ...], ...]
    input_hw: tuple[int, int]

    @property
    def heatmap_stride(self) -> int:
        return gt.heatmap_stride(self.genotype)


MODEL_SPECS: dict[str, ModelSpec] = {
    "XS": ModelSpec("evopose2d-xs", tuple(map(tuple, gt.EVOPOSE2D_XS)), (256, 192)),
    "S": ModelSpec("evopose2d-s", tuple(map(tuple, gt.EVOPOSE2D)), (256, 192)),
    "M": ModelSpec("evopose2d-m", tuple(map(tuple, gt.EVOPOSE2D)), (384, 288)),
    "L": ModelSpec("evopose2d-l", tuple(map(tuple, gt.EVOPOSE2D)), (512, 384)),
}


def get_spec(size: str) -> ModelSpec:
    """Look up ``"XS" | "S" | "M" | "L"`` (case-insensitive, ``evopose2d-`` prefix allowed)."""
    key = str(size).upper().replace("EVOPOSE2D-", "").replace("EVOPOSE2D_", "")
    if key not in MODEL_SPECS:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[key]


def _mbconv(x, *, name: str, filters_out: int, kernel_size: int, strides: int,
            expand_ratio: int, se_ratio: float, drop_rate: float, activation: str,
            regularizer) -> keras.KerasTensor:
    """One MBConv block with squeeze-excitation; layer names as in EfficientNet/EvoPose2D."""
    inputs = x
    filters_in = x.shape[-1]
    filters = filters_in * expand_ratio
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                          kernel_initializer=conv_kernel_initializer(),
                          kernel_regularizer=regularizer, name=name + "expand_conv")(x)
        x = layers.BatchNormalization(name=name + "expand_bn")(x)
        x = layers.Activation(activation, name=name + "expand_activation")(x)
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False,
                               depthwise_initializer=conv_kernel_initializer(),
                               depthwise_regularizer=regularizer, name=name + "dwconv")(x)
    x = layers.BatchNormalization(name=name + "bn")(x)
    x = layers.Activation(activation, name=name + "activation")(x)
    if 0 < se_ratio <= 1:
        filters_se = max(1, int(filters_in * se_ratio))
        se = layers.GlobalAveragePooling2D(name=name + "se_squeeze", keepdims=True)(x)
        se = layers.Conv2D(filters_se, 1, padding="same", activation=activation,
                           kernel_initializer=conv_kernel_initializer(),
                           kernel_regularizer=regularizer, name=name + "se_reduce")(se)
        se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                           kernel_initializer=conv_kernel_initializer(),
                           kernel_regularizer=regularizer, name=name + "se_expand")(se)
        x = layers.Multiply(name=name + "se_excite")([x, se])
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                      kernel_initializer=conv_kernel_initializer(),
                      kernel_regularizer=regularizer, name=name + "project_conv")(x)
    x = layers.BatchNormalization(name=name + "project_bn")(x)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=name + "drop")(x)
        x = layers.Add(name=name + "add")([x, inputs])
    return x


def build_evopose(
    genotype: Sequence[Sequence[int]] = gt.EVOPOSE2D,
    input_hw: tuple[int, int] = (256, 192),
    num_keypoints: int = 17,
    *,
    head_channels: int = 128,
    head_kernel: int = 3,
    final_kernel: int = 1,
    activation: str = "swish",
    width_coefficient: float = 1.0,
    depth_coefficient: float = 1.0,
    compound_scaling: bool = True,
    drop_connect_rate: float | None = None,
    weight_decay: float = 0.0,
    normalize_input: bool = True,
    name: str = "evopose",
) -> keras.Model:
    """Build an EvoPose2D network.

    Args:
        genotype: 7 x [kernel, repeats, filters/8, stride] (validated).
        input_hw: input (height, width) in pixels; with ``compound_scaling`` it also sets
            the width and depth multipliers (EfficientNet alpha=1.2, beta=1.1 from 224).
        num_keypoints: K output heatmap channels.
        head_channels: channels of the three transposed-convolution head blocks (scaled).
        weight_decay: L2 factor on kernels (the paper trains with 1e-5); 0 for inference.
        normalize_input: bake ImageNet mean/std normalisation of 0-255 RGB into the graph.

    Returns:
        A functional ``keras.Model`` mapping ``image`` (N, H, W, 3) float32 RGB 0-255 to
        heatmaps (N, H/s, W/s, K), s = :func:`genotype.heatmap_stride`.
    """
    blocks = gt.validate(genotype)
    h, w = int(input_hw[0]), int(input_hw[1])
    stride = gt.backbone_stride(blocks)
    if h % stride or w % stride:
        raise ValueError(
            f"input size {h}x{w} must be divisible by the backbone stride {stride} of this "
            "genotype")
    d, wc, drop = gt.scaling_parameters((h, w)) if compound_scaling else (1.0, 1.0, 0.2)
    width = width_coefficient * wc
    depth = depth_coefficient * d
    if drop_connect_rate is not None:
        drop = drop_connect_rate
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None

    img = keras.Input(shape=(h, w, 3), name="image", dtype="float32")
    x = img
    if normalize_input:
        mean = [255.0 * m for m in IMAGENET_MEAN_RGB]
        var = [(255.0 * s) ** 2 for s in IMAGENET_STD_RGB]
        x = layers.Normalization(mean=mean, variance=var, name="input_normalization")(x)
    x = layers.Conv2D(gt.round_filters(32, width), 3, strides=2, padding="same", use_bias=False,
                      kernel_initializer=conv_kernel_initializer(), kernel_regularizer=regularizer,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)

    total = float(sum(gt.round_repeats(b[1], depth) for b in blocks))
    b_index = 0
    for i, (kernel, repeats, filters8, strides) in enumerate(copy.deepcopy(blocks)):
        filters_out = gt.round_filters(filters8 * 8, width)
        for j in range(gt.round_repeats(repeats, depth)):
            x = _mbconv(x, name=f"block{i + 1}{chr(j + 97)}_", filters_out=filters_out,
                        kernel_size=kernel, strides=strides if j == 0 else 1,
                        expand_ratio=EXPAND_RATIOS[i], se_ratio=SE_RATIO,
                        drop_rate=drop * b_index / total, activation=activation,
                        regularizer=regularizer)
            b_index += 1

    for i in range(3):
        x = layers.Conv2DTranspose(gt.round_filters(head_channels, width), head_kernel, strides=2,
                                   padding="same", use_bias=False,
                                   kernel_initializer=conv_kernel_initializer(),
                                   kernel_regularizer=regularizer,
                                   name=f"head_block{i + 1}_conv")(x)
        x = layers.BatchNormalization(name=f"head_block{i + 1}_bn")(x)
        x = layers.Activation(activation, name=f"head_block{i + 1}_activation")(x)
    x = layers.Conv2D(num_keypoints, final_kernel, padding="same", use_bias=True,
                      kernel_initializer=final_kernel_initializer(), kernel_regularizer=regularizer,
                      name="final_conv")(x)
    return keras.Model(img, x, name=name)


def build_named(size: str, num_keypoints: int = 17, **kwargs) -> keras.Model:
    """Build ``"XS" | "S" | "M" | "L"`` with its published genotype and input size."""
    spec = get_spec(size)
    return build_evopose(spec.genotype, spec.input_hw, num_keypoints,
                         name=spec.name.replace("-", "_"), **kwargs)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass (batch 1), counted from the built graph.

    Counts convolutions (regular, depthwise, transposed) and dense layers from each layer's
    actual input/output shapes; elementwise ops (BN, activations, SE scaling) are not MACs.
    """
    macs = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        in_shape = tuple(layer.input.shape)
        out_shape = tuple(layer.output.shape)
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            macs += out_shape[1] * out_shape[2] * out_shape[3] * kh * kw
        elif isinstance(layer, layers.Conv2DTranspose):
            kh, kw = layer.kernel_size
            # every input pixel scatters a kh x kw x C_out patch
            macs += in_shape[1] * in_shape[2] * in_shape[3] * kh * kw * out_shape[3]
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            macs += out_shape[1] * out_shape[2] * out_shape[3] * kh * kw * in_shape[3] // layer.groups
        elif isinstance(layer, layers.Dense):
            macs += in_shape[-1] * out_shape[-1]
    return int(macs)


def count_params(model: keras.Model) -> int:
    """All weights (trainable and BN statistics), as the paper's parameter counts."""
    return int(model.count_params())
