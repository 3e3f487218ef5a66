"""Tiny real searches for tests/test_search.py (real images from ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _training_helpers import DATA_ROOT as DATA

from evopose_sdk.training.search.head_loss import tiny_search_config

#: Tests on the real coco128 photos: they fail, naming the folder, when it is missing.
needs_data = pytest.mark.usefixtures("coco128_data")


def tiny_config(generations: int = 2, **extra) -> dict:
    """A search of narrow 128x96 children trained 2 steps each on real coco128 photos."""
    return tiny_search_config(DATA, generations, **extra)


def lineage(search_dir: Path) -> list[tuple]:
    """(id, genotype string, parent, status) of every child of a search folder."""
    state = json.loads((search_dir / "search.json").read_text())
    out = []
    for g in state["generations"]:
        for cid in g["children"]:
            c = json.loads((search_dir / "children" / cid / "child.json").read_text())
            out.append((c["id"], c["genotype_str"], c["parent"], c["status"]))
    return out
