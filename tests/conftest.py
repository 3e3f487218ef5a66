"""Fixtures shared by the test modules: the coco128 data root, a random-weight pose ONNX made
by the export stage, and tiny mirror-symmetric pose graphs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _runtime_helpers import export_random_model, make_mirror_model
from _training_helpers import require_data


@pytest.fixture
def coco128_data() -> Path:
    """The shared data root holding ``coco128``; the test fails when it is missing."""
    return require_data("coco128")


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> dict[str, Path]:
    """Random-weight S ONNX from the export stage (the TFLite files: tflite_models).

    ``EVOPOSE_TEST_POSE_ONNX`` may point at an existing ONNX (with card) for local runs.
    """
    override = os.environ.get("EVOPOSE_TEST_POSE_ONNX")
    if override:
        return {"onnx": Path(override)}
    out = tmp_path_factory.mktemp("exported")
    return export_random_model(out / "s", "S", ("onnx",))


@pytest.fixture(scope="session")
def pose_onnx(exported) -> Path:
    assert "onnx" in exported, f"the export stage produced no ONNX file: {exported}"
    return exported["onnx"]


@pytest.fixture(scope="module")
def mirror_models(tmp_path_factory) -> dict[tuple[int, bool], Path]:
    d = tmp_path_factory.mktemp("mirror")
    return {(s, sym): make_mirror_model(d / f"mirror_s{s}_{sym}.onnx", (64, 48), s, sym)
            for s in (2, 4) for sym in (True, False)}
