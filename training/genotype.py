"""The EvoPose2D genotype grammar: 7 blocks x [kernel, repeats, filters/8, stride].

One documented encode / decode / validate, no framework imports (the search and the
runtime cards use it without Keras).

A genotype is a list of 7 blocks; block ``i`` is ``[kernel, repeats, filters // 8, stride]``:

* ``kernel``: depthwise kernel size (odd, 3 or 5 in the paper's search space);
* ``repeats``: number of MBConv blocks in the stage (1..4 in the search);
* ``filters // 8``: stage output channels divided by 8 (before width scaling);
* ``stride``: 1 or 2 for the stage's first block.

The string form (``encode`` / ``decode``) is ``"k3r1f2s1_k3r3f3s2_..."``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from evopose_sdk.errors import EvoPoseError

Genotype = list[list[int]]

NUM_BLOCKS = 7
KERNEL_CHOICES = (3, 5)
MAX_REPEATS = 4
#: The stem convolution halves the resolution once before the blocks.
STEM_STRIDE = 2
#: Three stride-2 transposed convolutions in the head.
HEAD_UPSAMPLING = 8

#: EfficientNet-B0 (Tan & Le, 2019): the ancestor of the search.
EFFICIENTNET_B0: Genotype = [
    [3, 1, 2, 1], [3, 2, 3, 2], [5, 2, 5, 2], [3, 3, 10, 2], [5, 3, 14, 1], [5, 4, 24, 2],
    [3, 1, 40, 1],
]

#: The published EvoPose2D genotype (S, M and L; total stride 16 -> heatmap stride 2).
EVOPOSE2D: Genotype = [
    [3, 1, 2, 1], [3, 3, 3, 2], [5, 2, 5, 2], [3, 4, 10, 2], [5, 2, 14, 1], [5, 4, 16, 1],
    [3, 2, 10, 1],
]

#: EvoPose2D-XS: the same genotype with a stride-2 sixth stage (heatmap stride 4).
EVOPOSE2D_XS: Genotype = [
    [3, 1, 2, 1], [3, 3, 3, 2], [5, 2, 5, 2], [3, 4, 10, 2], [5, 2, 14, 1], [5, 4, 16, 2],
    [3, 2, 10, 1],
]

_BLOCK_RE = re.compile(r"^k(\d+)r(\d+)f(\d+)s(\d+)$")


class GenotypeError(EvoPoseError, ValueError):
    """A genotype does not follow the grammar."""


def validate(genotype: Sequence[Sequence[int]], max_repeats: int = 8) -> Genotype:
    """Check a genotype and return it as a list of int lists.

    Raises:
        GenotypeError: naming the block and gene that is out of range.
    """
    try:
        blocks = [[int(g) for g in block] for block in genotype]
    except (TypeError, ValueError) as exc:
        raise GenotypeError(f"genotype must be 7 lists of 4 integers; received {genotype!r}") from exc
    if len(blocks) != NUM_BLOCKS:
        raise GenotypeError(f"genotype must have {NUM_BLOCKS} blocks; received {len(blocks)}")
    for i, block in enumerate(blocks):
        if len(block) != 4:
            raise GenotypeError(
                f"block {i + 1} must be [kernel, repeats, filters/8, stride]; received {block}")
        k, r, f, s = block
        if k < 1 or k % 2 == 0 or k > 7:
            raise GenotypeError(f"block {i + 1}: kernel must be odd in 1..7; received {k}")
        if not 1 <= r <= max_repeats:
            raise GenotypeError(f"block {i + 1}: repeats must be in 1..{max_repeats}; received {r}")
        if f < 1:
            raise GenotypeError(f"block {i + 1}: filters/8 must be >= 1; received {f}")
        if s not in (1, 2):
            raise GenotypeError(f"block {i + 1}: stride must be 1 or 2; received {s}")
    if backbone_stride(blocks) < HEAD_UPSAMPLING:
        raise GenotypeError(
            f"total backbone stride {backbone_stride(blocks)} is below the head's upsampling "
            f"({HEAD_UPSAMPLING}); heatmaps would be larger than the input")
    return blocks


def backbone_stride(genotype: Sequence[Sequence[int]]) -> int:
    """Input pixels per backbone feature cell (stem stride x block strides)."""
    return STEM_STRIDE * math.prod(int(b[3]) for b in genotype)


def heatmap_stride(genotype: Sequence[Sequence[int]]) -> int:
    """Input pixels per heatmap cell after the 3 x 2 upsampling head (S: 2, XS: 4)."""
    return backbone_stride(genotype) // HEAD_UPSAMPLING


def encode(genotype: Sequence[Sequence[int]]) -> str:
    """Genotype -> ``"k3r1f2s1_..."``."""
    return "_".join(f"k{k}r{r}f{f}s{s}" for k, r, f, s in validate(genotype))


def decode(text: str) -> Genotype:
    """``"k3r1f2s1_..."`` -> genotype (validated)."""
    blocks = []
    for part in str(text).strip().split("_"):
        m = _BLOCK_RE.match(part)
        if not m:
            raise GenotypeError(
                f"cannot parse block {part!r}; expected k<kernel>r<repeats>f<filters/8>s<stride>")
        blocks.append([int(g) for g in m.groups()])
    return validate(blocks)


def scaling_parameters(
    input_hw: tuple[int, int],
    default_size: int = 224,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
) -> tuple[float, float, float]:
    """EfficientNet compound scaling by input size.

    Returns:
        ``(depth_coefficient, width_coefficient, drop_connect_rate)``; 256x192 gives (1, 1, 0.2).
    """
    size = (input_hw[0] + input_hw[1]) / 2.0
    if size <= 240:
        drop = 0.2
    elif size <= 300:
        drop = 0.3
    elif size <= 456:
        drop = 0.4
    else:
        drop = 0.5
    phi = (math.log(size) - math.log(default_size)) / math.log(gamma)
    return alpha ** phi, beta ** phi, drop


def round_filters(filters: float, width_coefficient: float, divisor: int = 8) -> int:
    """Scale and round a channel count to a multiple of ``divisor`` (never down by > 10 %)."""
    filters *= width_coefficient
    new = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new < 0.9 * filters:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Scale a repeat count by the depth coefficient (ceil)."""
    return int(math.ceil(depth_coefficient * repeats))
