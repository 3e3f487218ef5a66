"""Tiny real searches for tests/test_search.py (real images from ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _training_helpers import DATA_ROOT as DATA

#: Tests on the real coco128 photos: they fail, naming the folder, when it is missing.
needs_data = pytest.mark.usefixtures("coco128_data")


def tiny_config(generations: int = 2, **extra) -> dict:
    """A search of narrow 128x96 children trained 2 steps each on real coco128 photos."""
    cfg = {
        "seed": 3, "generations": generations, "children": 4, "parents": 2,
        "input_hw": [128, 96], "ancestor_filter_scale": 0.25,
        "ancestor_epochs": 1, "child_epochs": 1,
        "train_config": {"model": {"head_channels": 16, "weight_decay": 0.0}},
        "train_overrides": [f"data.root={DATA}", 'data.sources=["coco128"]',
                            "train.batch_size=4", "train.steps_per_epoch=2",
                            "train.warmup_epochs=0", "train.lr=1e-3", "data.workers=0",
                            "train.precision=float32", "train.jit_compile=false",
                            "train.log_every_steps=100"],
        "val_max_people": 8, "val_batch_size": 8, "eager": True,
    }
    cfg.update(extra)
    return cfg


def lineage(search_dir: Path) -> list[tuple]:
    """(id, genotype string, parent, status) of every child of a search folder."""
    state = json.loads((search_dir / "search.json").read_text())
    out = []
    for g in state["generations"]:
        for cid in g["children"]:
            c = json.loads((search_dir / "children" / cid / "child.json").read_text())
            out.append((c["id"], c["genotype_str"], c["parent"], c["status"]))
    return out
