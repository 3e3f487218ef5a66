"""Per-joint teacher/label agreement and teacher-corrected label variants.

    python tools/teacher_labels.py --data ../shared/data --teacher-dir runs/teacher \
        --out runs/teacher_labels --table benchmarks/results/teacher_agreement.json

Reads the flip-averaged MoveNet Thunder keypoints of ``tools/teacher_pass.py`` and the human
labels; writes the agreement table (JSON + a Markdown table on stdout) and the label variants
``faces``, ``faces_hips`` and ``faces_hips_gated`` (``<out>/<variant>/<source>/annotations.json``).
What each variant changes: :mod:`evopose_sdk.training.teacher_labels`, which holds the logic.
"""

from __future__ import annotations

import sys

from evopose_sdk.training.teacher_labels import labels_main as main

if __name__ == "__main__":
    sys.exit(main())
