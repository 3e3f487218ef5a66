"""Keep the main training run's latest weights in the tree, so training continues anywhere.

    python tools/save_main_weights.py runs/main              # -> weights/evopose2d-s_main.weights.npz

Takes the run's newest checkpoint (``state.json``), writes its weights as one fp16
``.weights.npz`` (about 5 MB; :func:`evopose_sdk.training.release.save_main_weights`) with the
run's step, training seconds, CPU seconds and recipe in its metadata, replacing the previous
file (only the latest is kept). ``recipes/evopose2d_s256_main.json`` starts the next stage from
it (``init.from``) on a machine where the run folder is gone; where it survives, plain
``evopose-train --config ...`` resumes the run itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evopose_sdk.training.release import save_weights_main

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    return save_weights_main(argv, repo=REPO)


if __name__ == "__main__":
    sys.exit(main())
