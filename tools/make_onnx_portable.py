#!/usr/bin/env python3
"""Rewrite shipped pose ONNX files so that OpenCV DNN loads them too.

    python tools/make_onnx_portable.py models/evopose2d-s.onnx models/evopose2d-s-160.onnx \
        --data ../shared/data

The Keras checkpoints of the shipped models are not in the tree (weights/ holds a later
training stage), so they cannot be exported again; instead each file's ConvTranspose nodes
get the graph rewrite that ``evopose-export`` now applies to every export
(:func:`evopose_sdk.export.portable.symmetric_conv_transpose`: symmetric pads + Slice). The
rewritten file must give ONNX Runtime's heatmaps of the old one within ``--tolerance`` on
real person crops (the crops ``tools/ship_model.py`` uses for parity), or nothing is written.
The card keeps everything but the export details: ``recipe.export`` gains ``conv_transpose``
and a ``rewrite`` record (old sha256, nodes, measured difference); sha256 and the embedded
copy are renewed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CALIB_SOURCES = ("litehrnet", "julito", "lsp")
log = logging.getLogger("make_onnx_portable")


def rewrite(path: Path, data: Path, n_crops: int, tolerance: float) -> dict | None:
    """Rewrite one file in place and update its card; the rewrite record, or None when the
    file needs none."""
    import onnx

    from evopose_sdk.atomic import atomic_write_bytes
    from evopose_sdk.backends import make_backend
    from evopose_sdk.card import ModelCard, card_path_for, sha256_file
    from evopose_sdk.export import crops_from_coco, update_card
    from evopose_sdk.export.portable import CARD_NOTE, symmetric_conv_transpose

    card = ModelCard.load(card_path_for(path))
    model = onnx.load(str(path))
    nodes = symmetric_conv_transpose(model)
    if not nodes:
        log.info("%s: no asymmetric ConvTranspose; left as it is", path.name)
        return None
    onnx.checker.check_model(model)
    new_bytes = model.SerializeToString()
    crops = crops_from_coco([data / s / "annotations.json" for s in CALIB_SOURCES],
                            tuple(card.input_size), n_crops)
    old, new = (make_backend(src, "onnxruntime", threads=2) for src in (path, new_bytes))
    diffs = [float(np.abs(old.run(crops.images[i:i + 8]) - new.run(crops.images[i:i + 8])).max())
             for i in range(0, len(crops), 8)]
    diff = max(diffs)
    if diff > tolerance:
        raise SystemExit(f"{path.name}: rewritten heatmaps differ by {diff:.3g} > {tolerance}")
    record = {
        "tool": "tools/make_onnx_portable.py", "date": dt.date.today().isoformat(),
        "why": "the Keras checkpoint of these weights is not in the tree, so the shipped ONNX "
               "graph was rewritten instead of exported again",
        "from_sha256": sha256_file(path), "nodes": nodes, "onnx": md.version("onnx"),
        "onnxruntime_vs_previous_file": {"max_abs_diff": diff, "n_crops": len(crops),
                                         "crops": crops.description}}
    atomic_write_bytes(path, new_bytes)
    export = {**card.recipe.get("export", {}), "conv_transpose": CARD_NOTE, "rewrite": record}
    update_card(path, recipe={**card.recipe, "export": export})
    log.info("%s: %d ConvTranspose nodes rewritten; ONNX Runtime heatmaps max |diff| %.3g "
             "vs the old file on %d crops", path.name, len(nodes), diff, len(crops))
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("models", nargs="+", type=Path, help="pose .onnx files with their cards")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n-crops", type=int, default=32)
    ap.add_argument("--tolerance", type=float, default=1e-5,
                    help="largest allowed heatmap difference to the old file (ONNX Runtime)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in args.models:
        rewrite(path, args.data, args.n_crops, args.tolerance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
