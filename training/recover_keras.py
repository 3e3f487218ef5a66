"""Rebuild a trainable Keras checkpoint from a shipped EvoPose2D ONNX file
(``tools/recover_keras.py`` is its command line).

The shipped models were trained before the project kept its training weights in the tree;
their ONNX files are the only copy. tf2onnx folded each batch norm into the convolution
before it (kernel x scale, plus a bias) or into a Mul/Add pair after it, so the graph holds
the *effective* per-channel affine ``y = c * conv(x) + b`` but not the four batch-norm
statistics. This module reads every convolution by its Keras layer name (tf2onnx keeps the
names), puts the effective kernel into the Keras layer and re-creates the batch norm so that

* inference is unchanged: ``gamma * (z - m) / sqrt(v + eps) + beta == c * z + b`` exactly;
* training behaves as before: ``m, v`` are the per-channel mean and variance of the
  convolution output ``z`` on real training crops, so batch statistics in training mode stay
  close to the moving ones and ``gamma ~ c * sqrt(v)`` is the original scale.

The rebuilt model is checked against the ONNX file on the calibration crops (max abs heatmap
difference; :func:`recover_keras` refuses above ``tolerance``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from evopose_sdk.errors import EvoPoseError

log = logging.getLogger(__name__)

_LAYER_RE = re.compile(r"/([A-Za-z0-9_]+?)_1/(?:convolution|conv_transpose|depthwise|BiasAdd)")
_BN_RE = re.compile(r"/([A-Za-z0-9_]+?)_1/batchnorm/")


def onnx_affines(path: str | Path) -> dict[str, dict]:
    """Per Keras conv layer name: ``kernel`` (ONNX layout), ``op``, ``scale`` (C,), ``bias`` (C,),
    ``bn`` (the batch-norm layer name or None)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    out: dict[str, dict] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        wname = node.input[1]
        m = _LAYER_RE.search(node.name + ":") or _LAYER_RE.search(wname)
        if m is None:
            raise ValueError(f"cannot name the layer of ONNX node {node.name} ({wname})")
        layer = m.group(1)
        kernel = inits[wname]
        channels = kernel.shape[1] if node.op_type == "ConvTranspose" else kernel.shape[0]
        entry = {"op": node.op_type, "kernel": kernel, "scale": np.ones(channels, np.float32),
                 "bias": np.zeros(channels, np.float32), "bn": None, "has_bias": False}
        if len(node.input) > 2 and node.input[2]:
            entry["bias"] = inits[node.input[2]].reshape(-1)
            entry["has_bias"] = True
            mb = _BN_RE.search(node.input[2])
            entry["bn"] = mb.group(1) if mb else None
        else:
            nxt = consumers.get(node.output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "Slice":  # symmetric pads + Slice (export)
                nxt = consumers.get(nxt[0].output[0], [])
            if len(nxt) == 1 and nxt[0].op_type == "Mul" and nxt[0].input[1] in inits:
                entry["scale"] = inits[nxt[0].input[1]].reshape(-1)
                entry["bn"] = _BN_RE.search(nxt[0].output[0]).group(1)
                add = consumers.get(nxt[0].output[0], [])
                if len(add) == 1 and add[0].op_type == "Add" and add[0].input[1] in inits:
                    entry["bias"] = inits[add[0].input[1]].reshape(-1)
                else:
                    raise ValueError(f"{layer}: batch-norm Mul without its Add")
        out[layer] = entry
    return out


def keras_kernel(entry: dict) -> np.ndarray:
    """ONNX kernel layout -> Keras layout."""
    k = entry["kernel"]
    if entry["op"] == "ConvTranspose":      # ONNX (in, out, kh, kw) -> Keras (kh, kw, out, in)
        return k.transpose(2, 3, 1, 0)
    if k.shape[1] == 1 and entry.get("depthwise"):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return k.transpose(2, 3, 0, 1)
    return k.transpose(2, 3, 1, 0)          # (out, in, kh, kw) -> (kh, kw, in, out)


def build_from_card(card: dict):
    """The Keras network the card describes (genotype, input size, keypoints)."""
    from evopose_sdk.training import network

    cfg = (card.get("recipe") or {}).get("config") or {}
    mcfg = cfg.get("model") or {}
    return network.build_evopose(
        card["genotype"], tuple(card["input_size"]), len(card["keypoint_names"]),
        head_channels=int(mcfg.get("head_channels") or 128),
        activation=mcfg.get("activation") or "swish",
        compound_scaling=False, weight_decay=0.0,
        name=str(card.get("name", "evopose")).replace("-", "_"))


def load_effective(model, affines: dict[str, dict]) -> list[str]:
    """Put every effective kernel in ``model``, batch norms as ``c * z + b``; returns the
    names of the (conv, bn) pairs for :func:`recalibrate`."""
    import keras

    pairs = []
    used = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D
                          | keras.layers.Conv2DTranspose):
            continue
        if layer.name not in affines:
            raise ValueError(f"layer {layer.name} has no weights in the ONNX file")
        e = affines[layer.name]
        e["depthwise"] = isinstance(layer, keras.layers.DepthwiseConv2D)
        kernel = keras_kernel(e)
        want = tuple(layer.get_weights()[0].shape)
        if kernel.shape != want:
            raise ValueError(f"{layer.name}: kernel {kernel.shape} vs Keras {want}")
        used.add(layer.name)
        if e["bn"] is None:  # plain conv with bias (SE, final)
            layer.set_weights([kernel, e["bias"]])
            continue
        layer.set_weights([kernel])
        bn = model.get_layer(e["bn"])
        eps = bn.epsilon
        ones = np.ones_like(e["scale"])
        bn.set_weights([e["scale"], e["bias"], np.zeros_like(ones), ones - eps])
        pairs.append(layer.name)
    missing = set(affines) - used
    if missing:
        raise ValueError(f"ONNX layers with no Keras layer: {sorted(missing)[:5]}")
    return pairs


def recalibrate(model, pairs: list[str], affines: dict[str, dict], crops: np.ndarray,
                batch: int = 16) -> None:
    """Re-derive each batch norm's (gamma, beta, mean, var) from conv-output statistics."""
    import keras

    outs = [model.get_layer(n).output for n in pairs]
    probe = keras.Model(model.input, outs)
    s1 = [0.0] * len(pairs)
    s2 = [0.0] * len(pairs)
    count = 0
    for i in range(0, len(crops), batch):
        zs = probe.predict(crops[i:i + batch], verbose=0)
        for j, z in enumerate(zs):
            z = z.astype(np.float64).reshape(-1, z.shape[-1])
            s1[j] = s1[j] + z.sum(0)
            s2[j] = s2[j] + (z * z).sum(0)
        count += zs[0].shape[0]
    for j, name in enumerate(pairs):
        e = affines[name]
        bn = model.get_layer(e["bn"])
        n = count * (probe.outputs[j].shape[1] * probe.outputs[j].shape[2])
        m = s1[j] / n
        v = np.maximum(s2[j] / n - m * m, 1e-6)
        c, b = e["scale"].astype(np.float64), e["bias"].astype(np.float64)
        gamma = c * np.sqrt(v + bn.epsilon)
        beta = b + c * m
        bn.set_weights([gamma.astype(np.float32), beta.astype(np.float32),
                        m.astype(np.float32), v.astype(np.float32)])


def calibration_crops(data_root: Path, input_hw, count: int, seed: int = 0) -> np.ndarray:
    """(count, h, w, 3) float32 plain crops of training people from every source."""
    from evopose_sdk.training.samples import make_sample
    from evopose_sdk.training.sources import load_sources, read_image_rgb, sources_in_root

    specs = sources_in_root(data_root, split="train")
    records = load_sources(specs)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(records), size=min(count, len(records)), replace=False)
    crops = []
    for i in pick:
        img = read_image_rgb(records.image_paths[i])
        s = make_sample(img, records.boxes_xywh[i], records.keypoints[i], input_hw, 4)
        crops.append(s["image"])
    return np.stack(crops).astype(np.float32)


class RecoveryError(EvoPoseError, RuntimeError):
    """The rebuilt model differs from the ONNX file by more than the tolerance."""


def recover_keras(onnx: str | Path, out: str | Path, data_root: str | Path, crops: int = 96,
                  tolerance: float = 2e-3) -> float:
    """Rebuild ``onnx`` (with its card ``<onnx>.json``) as a trainable ``.keras`` checkpoint
    ``out`` (+ its keypoint set beside it), batch norms recalibrated on ``crops`` training
    crops of ``data_root``. Returns the max abs heatmap difference against the ONNX file on
    16 of the crops; raises :class:`RecoveryError` (writing nothing) above ``tolerance``."""
    import onnxruntime as ort  # noqa: PLC0415

    from evopose_sdk.training.keypoint_sets import KeypointSet, save_beside  # noqa: PLC0415
    from evopose_sdk.training.rundir import save_keras_atomic  # noqa: PLC0415

    onnx = str(onnx)
    card = json.loads(Path(onnx + ".json").read_text())
    affines = onnx_affines(onnx)
    model = build_from_card(card)
    pairs = load_effective(model, affines)
    x = calibration_crops(Path(data_root), tuple(card["input_size"]), crops)
    recalibrate(model, pairs, affines, x)
    sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x[:16]})[0]
    got = model.predict(x[:16], verbose=0)
    diff = float(np.abs(ref - got).max())
    log.info("rebuilt %d layers (%d batch norms); max |heatmap diff| vs ONNX %.2e (peak %.3f)",
             len(affines), len(pairs), diff, float(np.abs(ref).max()))
    if diff > tolerance:
        raise RecoveryError(f"the rebuilt model differs from the ONNX file by {diff:.2e} > "
                            f"{tolerance:.2e}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_keras_atomic(model, out)
    save_beside(KeypointSet.from_dict(card), out)  # the card's keypoint set travels on
    log.info("wrote %s (+ %s)", out, out.stem + ".keypoints.json")
    return diff
