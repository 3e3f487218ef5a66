"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from _training_helpers import require_data


@pytest.fixture
def coco128_data() -> Path:
    """The shared data root holding ``coco128``; the test fails when it is missing."""
    return require_data("coco128")
