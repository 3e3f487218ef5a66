"""Load EvoPose2D weights from the authors' legacy Keras H5 checkpoints, by layer name.

The authors published ``evopose2d_{XS,S,M,L}_f32.h5``, saved by TF 2.3 with
``model.save(..., save_format='h5')``. Their layout::

    /model_weights                  attrs: layer_names = [b"stem_conv", ...]
    /model_weights/<layer>          attrs: weight_names = [b"<layer>/kernel:0", ...]
    /model_weights/<layer>/<layer>/<weight>:0   dataset

A weights-only file (``model.save_weights('x.h5')``) has the same structure at the root.
Our models bake the input normalisation into the graph (layer ``input_normalization``); the
authors normalised outside the model, so that layer is not expected in their files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import h5py
import keras
import numpy as np

from evopose_sdk.errors import EvoPoseError

log = logging.getLogger(__name__)

#: Layers of our graph that carry fixed (non-learned) values and are never in the authors' files.
FIXED_LAYERS = frozenset({"input_normalization"})


class CheckpointError(EvoPoseError, ValueError):
    """A checkpoint does not fit the model; the message lists what is missing or mismatched."""


@dataclass
class LoadReport:
    """What a by-name load did."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} layers loaded"]
        if self.missing:
            parts.append(f"missing in file: {', '.join(self.missing)}")
        if self.mismatched:
            parts.append(f"shape mismatch: {'; '.join(self.mismatched)}")
        if self.unexpected:
            parts.append(f"in file but not in model: {', '.join(self.unexpected)}")
        return "; ".join(parts)


def _decode(names) -> list[str]:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_h5_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a legacy Keras H5 file into ``{layer_name: [arrays in saved order]}``.

    Raises:
        CheckpointError: if the file is not a Keras H5 weights file.
    """
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"{path} is not an HDF5 file: {exc}") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise CheckpointError(
                f"{path} has no 'layer_names' attribute: not a Keras H5 model or weights file")
        out: dict[str, list[np.ndarray]] = {}
        for layer in _decode(root.attrs["layer_names"]):
            group = root[layer]
            names = _decode(group.attrs.get("weight_names", []))
            if names:
                out[layer] = [np.asarray(group[n]) for n in names]
        return out


def load_h5_weights(model: keras.Model, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load an authors' H5 checkpoint into ``model`` by layer name.

    Args:
        model: a model from :func:`evopose_sdk.training.network.build_evopose`.
        path: ``.h5`` file (full model or weights only, legacy layout).
        strict: raise if any model layer is missing in the file or has another shape.

    Returns:
        A :class:`LoadReport`.

    Raises:
        CheckpointError: listing every missing and mismatched layer (strict mode), or when
            nothing at all matches.
    """
    saved = read_h5_weights(path)
    report = LoadReport()
    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    model_layers = {layer.name for layer in model.layers}
    for layer in model.layers:
        if not layer.weights or layer.name in FIXED_LAYERS:
            continue
        if layer.name not in saved:
            report.missing.append(layer.name)
            continue
        arrays = saved[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            report.mismatched.append(f"{layer.name}: model {expected} vs file {got}")
            continue
        assignments.append((layer, arrays))
    report.unexpected = sorted(n for n in saved if n not in model_layers)
    if not assignments:
        raise CheckpointError(f"no layer of {path} matches the model: {report.summary()}")
    if strict and (report.missing or report.mismatched):
        raise CheckpointError(f"checkpoint {path} does not fit the model: {report.summary()}")
    for layer, arrays in assignments:
        layer.set_weights(arrays)
        report.loaded.append(layer.name)
    log.info("loaded %s: %s", path, report.summary())
    return report


def save_h5_legacy(model: keras.Model, path: str | os.PathLike, full_model: bool = True) -> None:
    """Write ``model``'s weights in the TF 2.3 legacy H5 layout (for tests and interop).

    Args:
        full_model: nest under ``/model_weights`` as ``model.save(save_format='h5')`` did;
            otherwise write the ``save_weights`` layout at the root.
    """
    with h5py.File(path, "w") as f:
        if full_model:
            f.attrs["keras_version"] = b"2.4.0"
            f.attrs["backend"] = b"tensorflow"
            f.attrs["model_config"] = b'{"class_name": "Functional"}'
            root = f.create_group("model_weights")
        else:
            root = f
        names = [layer.name for layer in model.layers if layer.name not in FIXED_LAYERS]
        root.attrs["layer_names"] = np.array([n.encode("utf-8") for n in names], dtype="S")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.4.0"
        for layer in model.layers:
            if layer.name in FIXED_LAYERS:
                continue
            group = root.create_group(layer.name)
            weight_names = []
            for w in layer.weights:
                short = w.path.split("/")[-1]
                wname = f"{layer.name}/{short}:0"
                group.create_dataset(wname, data=np.asarray(keras.ops.convert_to_numpy(w)))
                weight_names.append(wname.encode("utf-8"))
            group.attrs["weight_names"] = np.array(weight_names, dtype="S")
