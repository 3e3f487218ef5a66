"""COCO keypoint accuracy (AP/AP50/AP75/AR) on the ``dev_val`` split of the shared data.

    python benchmarks/eval_dev_val.py --models models/evopose2d-s.onnx models/evopose2d-s_int8.tflite \\
        --data ../shared/data --peers /tmp/peers/models

The rows (our files through the runtime on GT and detector boxes, flip on and off; the
MoveNet peers on GT boxes) and the options: :mod:`evopose_sdk.training.dev_val_report`, which
this command runs (``python -m evopose_sdk.training.dev_val_report`` is the same). Writes
``benchmarks/results/eval_dev_val_<tag>.json`` and prints a Markdown table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from evopose_sdk.training.dev_val_report import main as _main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    return _main(argv, repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
