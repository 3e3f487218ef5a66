"""Pseudo-label the face keypoints of people whose source labels none (LSP, LSPET, PARSE).

    python tools/pseudo_label_faces.py --data ../shared/data --teacher /tmp/peers/models/movenet_thunder.tflite \
        --out runs/pseudo_faces [--sources lsp,lspet,parse] [--min-score 0.3]

The teacher (MoveNet Thunder, Apache-2.0, built by ../shared/peers/get_peers.sh) runs on a
1.25x square crop around each person's box; its face points are kept where gated by score and
head distance (:mod:`evopose_sdk.training.pseudo_labeller`, which holds the logic). Human labels
are never changed. Writes ``<out>/<source>/annotations.json`` (the images stay in the data
folder: point a training config's ``images`` at them) and ``<out>/summary.json``.
"""

from __future__ import annotations

import sys

from evopose_sdk.training.pseudo_labeller import main

if __name__ == "__main__":
    sys.exit(main())
