"""Digests of the first training batches of every bundled recipe's sample pipeline.

``python tests/_pipeline_digests.py > tests/data/first_batches.json`` writes them; the test
(tests/test_sample_pipeline.py) recomputes them with today's code. The committed file was
written by the code before the sample pipeline became a list of steps (commit 0eb6195), so
the test proves that every recipe still draws the same samples, bitwise.

The people are the real coco128 train people (``../shared/data``), the recipe's own input
size, sigma, augmentation and seed; two batches of 6 at epochs 0 and 3.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BATCH, BATCHES, EPOCHS = 6, 2, (0, 3)


def recipe_paths() -> list[Path]:
    """Every training recipe and bundled config whose sample pipeline is checked (the
    architecture search's configs, ``recipes/search/``, train no samples of their own)."""
    paths = sorted(p for p in (REPO / "recipes").rglob("*.json")
                   if p.parent != REPO / "recipes" / "search")
    paths += sorted((REPO / "training" / "configs").glob("*.json"))
    return paths


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def recipe_digests(path: Path, data_root: Path) -> dict[str, str]:
    """{"<epoch>/<batch>": digest of (images, heatmaps, weights)} for one recipe."""
    from evopose_sdk.training import config as cfgmod
    from evopose_sdk.training import genotype as gt
    from evopose_sdk.training.batches import make_batches
    from evopose_sdk.training.model import model_geometry
    from evopose_sdk.training.sources import load_sources, sources_in_root

    cfg = cfgmod.load_config(path)
    cfg["train"]["batch_size"] = BATCH
    genotype, hw, _ = model_geometry(cfg)
    stride = gt.heatmap_stride(genotype)
    rec = load_sources(sources_in_root(data_root, "train", ["coco128"]))
    out = {}
    for epoch in EPOCHS:
        b = make_batches(cfg, rec, hw, stride, epoch=epoch)
        for i in range(BATCHES):
            out[f"{epoch}/{i}"] = digest(*b.batch(i))
    return out


def main() -> int:
    data_root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
    res = {str(p.relative_to(REPO)): recipe_digests(p, data_root) for p in recipe_paths()}
    print(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
