#!/usr/bin/env python3
"""Rebuild a trainable Keras checkpoint from a shipped EvoPose2D ONNX file.

    python tools/recover_keras.py models/evopose2d-s.onnx --out runs/recovered/evopose2d-s.keras \\
        --data ../shared/data

How (batch norms folded by tf2onnx, re-created from the effective affines and real training
crops): :mod:`evopose_sdk.training.recover_keras`. The rebuilt model is checked against the
ONNX file on the calibration crops; the tool fails above ``--tolerance``.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger("recover_keras")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("onnx")
    p.add_argument("--out", required=True, help="output .keras checkpoint")
    p.add_argument("--data", required=True, help="training data root (calibration crops)")
    p.add_argument("--crops", type=int, default=96)
    p.add_argument("--tolerance", type=float, default=2e-3,
                   help="max abs heatmap difference allowed against the ONNX file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from evopose_sdk.training.recover_keras import RecoveryError, recover_keras

    try:
        recover_keras(args.onnx, args.out, args.data, args.crops, args.tolerance)
    except RecoveryError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
