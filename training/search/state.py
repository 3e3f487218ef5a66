"""On-disk state of a search: one JSON per child plus ``search.json`` (all written atomically).

Layout of a search folder::

    search.json                     config, seen genotypes, the generations and their parents
    children/g001_c003/child.json   genotype, parent, mutation, status, metrics, fitness
    children/g001_c003/model.keras  the trained child (weights for its own children)
    children/g001_c003/run/         the child's training run (logs; checkpoints while training)

``search.json`` is the commit point of planning: a generation's children are written as
``pending`` child files first, then listed in ``search.json``. A child becomes ``done`` when
its ``child.json`` says so, which is written after its ``model.keras``. A search killed at
any moment therefore resumes without retraining a finished child or planning one twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.errors import EvoPoseError

SEARCH_FILE = "search.json"
CHILD_FILE = "child.json"
CHILDREN_DIR = "children"
STATE_VERSION = 1


class SearchStateError(EvoPoseError, RuntimeError):
    """A search folder is missing, corrupt or belongs to another search."""


def child_id(generation: int, index: int) -> str:
    """``g001_c003``: the id (and folder name) of child ``index`` of ``generation``."""
    return f"g{int(generation):03d}_c{int(index):03d}"


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SearchStateError(f"{path} does not exist") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise SearchStateError(f"{path} is unreadable or corrupt: {exc}") from exc


def write_json(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as indented JSON through a temp file + ``os.replace``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class SearchDir:
    """Paths and atomic reads/writes of one search folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()

    @property
    def search_path(self) -> Path:
        return self.root / SEARCH_FILE

    def exists(self) -> bool:
        return self.search_path.is_file()

    def child_dir(self, cid: str) -> Path:
        return self.root / CHILDREN_DIR / cid

    def child_path(self, cid: str) -> Path:
        return self.child_dir(cid) / CHILD_FILE

    def read_search(self) -> dict:
        data = read_json(self.search_path)
        if data.get("version") != STATE_VERSION or "generations" not in data:
            raise SearchStateError(f"{self.search_path} is not an evopose search state "
                                   f"(version {data.get('version')!r})")
        return data

    def write_search(self, data: dict) -> None:
        write_json(self.search_path, data)

    def read_child(self, cid: str) -> dict:
        return read_json(self.child_path(cid))

    def write_child(self, record: dict) -> None:
        write_json(self.child_path(record["id"]), record)

    def all_children(self) -> list[dict]:
        """Every child record listed in ``search.json``, in generation order."""
        data = self.read_search()
        return [self.read_child(c) for g in data["generations"] for c in g["children"]]
