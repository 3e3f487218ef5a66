"""Run the teacher (MoveNet Thunder, flip-averaged) over every training person once.

    python tools/teacher_pass.py --data ../shared/data --teacher /tmp/peers/models/movenet_thunder.tflite \
        --out runs/teacher [--sources lsp,lspet,parse,litehrnet,julito,coco128]

Writes ``<out>/<source>.npz`` with ``ann_ids`` (n,) and ``teacher`` (n, 17, 3): x, y in image
pixels and score, the mean of a plain and a mirrored pass on the same 1.25x square crop.
``tools/teacher_labels.py`` turns these into the per-joint agreement table and the label
variants. Resumable per source. The logic: :func:`evopose_sdk.training.teacher_labels.
teacher_pass`.
"""

from __future__ import annotations

import sys

from evopose_sdk.training.teacher_labels import pass_main as main

if __name__ == "__main__":
    sys.exit(main())
