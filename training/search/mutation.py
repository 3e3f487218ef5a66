"""One-gene mutation of EvoPose2D genotypes (the search space of the paper).

Pure Python (no Keras): a child differs from its parent in exactly one gene of one block:

* ``kernel``: switched to another value of ``kernels`` (the paper: 3 <-> 5);
* ``repeats``: +-1 within ``1..max_repeats``;
* ``filters/8``: +-1..``filter_step`` within ``1..`` the ancestor's value of that block;
* ``stride``: 1 <-> 2, only in the last ``stride_blocks`` blocks, and only when the backbone
  stride (stem x blocks) stays in ``backbone_strides`` (e.g. 16 or 32).

Children are drawn from ``numpy.random.default_rng`` streams, so a search is deterministic
given its seed; a genotype in ``seen`` is never produced again.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from evopose_sdk.training import genotype as gt

GENES = ("kernel", "repeats", "filters", "stride")


@dataclass
class MutationSpace:
    """The bounds of a one-gene mutation (see the module docstring)."""

    ancestor: list[list[int]] = field(default_factory=lambda: copy.deepcopy(gt.EFFICIENTNET_B0))
    kernels: tuple[int, ...] = gt.KERNEL_CHOICES
    max_repeats: int = gt.MAX_REPEATS
    filter_step: int = 1
    stride_blocks: int = 3
    backbone_strides: tuple[int, ...] = (16, 32)
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0

    def __post_init__(self) -> None:
        self.ancestor = gt.validate(self.ancestor)
        self.kernels = tuple(int(k) for k in self.kernels)
        self.backbone_strides = tuple(int(s) for s in self.backbone_strides)
        if len(self.kernels) < 2:
            raise ValueError(f"kernels needs at least two choices; received {self.kernels}")
        if not 1 <= self.stride_blocks <= gt.NUM_BLOCKS:
            raise ValueError(f"stride_blocks must be in 1..{gt.NUM_BLOCKS}; "
                             f"received {self.stride_blocks}")
        if self.max_repeats < 1 or self.filter_step < 1:
            raise ValueError(f"max_repeats and filter_step must be >= 1; received "
                             f"{self.max_repeats}, {self.filter_step}")

    @classmethod
    def from_dict(cls, d: dict | None) -> MutationSpace:
        d = dict(d or {})
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown mutation fields {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        if isinstance(d.get("ancestor"), str):
            d["ancestor"] = gt.decode(d["ancestor"])
        return cls(**d)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kernels"] = list(self.kernels)
        out["backbone_strides"] = list(self.backbone_strides)
        return out

    def signature(self, genotype: Sequence[Sequence[int]]) -> str:
        """The network a genotype builds: repeats and channels after compound scaling.

        Below 224 px the builder scales depth and width down (e.g. 0.40 and 0.62 at 128x96),
        so repeats 1 and 2 or filters/8 1 and 2 can build the same network. The seen-set holds
        signatures, so such twins are never trained twice. Equal to ``encode`` when both
        coefficients are 1, except that ``f`` is the channel count (filters, not filters/8).
        """
        return "_".join(
            f"k{k}r{gt.round_repeats(r, self.depth_coefficient)}"
            f"f{gt.round_filters(f * 8, self.width_coefficient)}s{s}"
            for k, r, f, s in gt.validate(genotype))

    def is_valid(self, genotype: Sequence[Sequence[int]]) -> bool:
        """Whether ``genotype`` lies inside this search space."""
        try:
            g = gt.validate(genotype, max_repeats=max(self.max_repeats, gt.MAX_REPEATS))
        except gt.GenotypeError:
            return False
        for b, a in zip(g, self.ancestor, strict=True):
            if not 1 <= b[2] <= a[2] or not 1 <= b[1] <= self.max_repeats:
                return False
        return gt.backbone_stride(g) in self.backbone_strides

    def candidates(self, parent: Sequence[Sequence[int]]) -> list[tuple[int, str, int]]:
        """Every legal one-gene change of ``parent`` as (block index, gene, new value)."""
        p = gt.validate(parent)
        out: list[tuple[int, str, int]] = []
        for i, (k, r, f, s) in enumerate(p):
            out += [(i, "kernel", kk) for kk in self.kernels if kk != k]
            out += [(i, "repeats", rr) for rr in (r - 1, r + 1) if 1 <= rr <= self.max_repeats]
            top = self.ancestor[i][2]
            out += [(i, "filters", f + d) for d in range(-self.filter_step, self.filter_step + 1)
                    if d and 1 <= f + d <= top]
            if i >= gt.NUM_BLOCKS - self.stride_blocks:
                child = apply(p, i, "stride", 3 - s)
                if gt.backbone_stride(child) in self.backbone_strides:
                    out.append((i, "stride", 3 - s))
        return out


def apply(genotype: Sequence[Sequence[int]], block: int, gene: str, value: int) -> list[list[int]]:
    """Copy of ``genotype`` with ``gene`` of ``block`` (0-based) set to ``value``."""
    g = [list(map(int, b)) for b in genotype]
    g[block][GENES.index(gene)] = int(value)
    return g


def mutate(parent: Sequence[Sequence[int]], space: MutationSpace, rng: np.random.Generator,
           seen: Iterable[str] = ()) -> tuple[list[list[int]], dict]:
    """One child of ``parent``: exactly one gene changed, its network not in ``seen``.

    ``seen`` holds :meth:`MutationSpace.signature` strings of every genotype trained so far.

    The block is drawn first (uniformly among blocks that still have an unseen legal change),
    then the change within the block, as in the paper's "one random gene" mutation.

    Returns:
        (child genotype, ``{"block": 1-based block, "gene": name, "from": old, "to": new}``).

    Raises:
        RuntimeError: when every one-gene child of ``parent`` has been seen.
    """
    seen = set(seen) | {space.signature(parent)}
    p = gt.validate(parent)
    by_block: dict[int, list[tuple[int, str, int]]] = {}
    for c in space.candidates(p):
        if space.signature(apply(p, *c)) not in seen:
            by_block.setdefault(c[0], []).append(c)
    if not by_block:
        raise RuntimeError(f"every one-gene mutation of {gt.encode(p)} was already trained")
    blocks = sorted(by_block)
    b = blocks[int(rng.integers(len(blocks)))]
    opts = by_block[b]
    i, gene, value = opts[int(rng.integers(len(opts)))]
    child = apply(p, i, gene, value)
    return child, {"block": i + 1, "gene": gene, "from": p[i][GENES.index(gene)], "to": value}


def scale_filters(genotype: Sequence[Sequence[int]], factor: float) -> list[list[int]]:
    """A narrower genotype: every ``filters/8`` multiplied by ``factor`` (rounded, >= 1)."""
    if factor <= 0:
        raise ValueError(f"filter scale must be > 0; received {factor}")
    return gt.validate([[k, r, max(1, int(round(f * factor))), s] for k, r, f, s in genotype])
