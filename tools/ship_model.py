#!/usr/bin/env python3
"""Export a trained checkpoint into models/, measure it on dev_val, and write the figures into
its cards. The shipped files are exactly what this script leaves in models/.

    python tools/ship_model.py runs/evopose2d-s-256-qat/final.keras --name evopose2d-s \
        --recipe recipes/evopose2d_s_cpu_short.json --run-dir runs/evopose2d-s-128 \
        --recipe recipes/evopose2d_s128_faces.json --run-dir runs/evopose2d-s-128-ft \
        --recipe recipes/evopose2d_s256.json --run-dir runs/evopose2d-s-256 \
        --recipe recipes/evopose2d_s256_qat.json --run-dir runs/evopose2d-s-256-qat \
        --pseudo-faces runs/pseudo_faces/summary.json --data ../shared/data --peers /tmp/peers/models

(``evopose2d-s-128`` was shipped the same way from ``runs/evopose2d-s-128-ft/final.keras`` with
the first two stages.) The script exports all three files; an int8 file whose dev_val AP falls
2 AP or more below fp32 must not stay in models/ (tests/test_shipped_models.py checks it).

A model trained in stages (each stage initialised from the previous one's final model) gives
one ``--recipe``/``--run-dir`` pair per stage, in order.

Steps (:func:`evopose_sdk.training.release.ship_model`): export (ONNX fp32, TFLite fp16, TFLite
int8; int8 calibrated and parity measured on person crops from train-split sources), the
dev_val table of benchmarks/eval_dev_val.py on the three files (+ the MoveNet peers when
present; ``benchmarks/results/eval_dev_val_<name>_shipped.json``), then
evopose_sdk.export.update_card with the dev_val table, the training data and its licences, the
recipe and the training time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evopose_sdk.training.release import ship_main

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    return ship_main(argv, repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
