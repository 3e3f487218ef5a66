"""Teacher pass, agreement table and label variants (tools/teacher_pass.py, teacher_labels.py,
wrappers of evopose_sdk.training.teacher_labels) with a real MoveNet on real people, and the rebuilt-from-ONNX checkpoint (tools/recover_keras.py
over evopose_sdk.training.recover_keras) with its fp16 weights file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _training_helpers import REPO, require_data
from test_pseudo_faces import _lightning

SOURCES = "lsp,lspet,parse,litehrnet,julito,coco128"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    data = require_data(*SOURCES.split(","))
    tmp = tmp_path_factory.mktemp("teacher")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "teacher_pass.py"),
                           "--data", str(data), "--teacher", str(_lightning()),
                           "--out", str(tmp / "t"), "--sources", SOURCES, "--limit", "12",
                           "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "teacher_labels.py"),
                           "--data", str(data), "--teacher-dir", str(tmp / "t"),
                           "--out", str(tmp / "v"), "--table", str(tmp / "table.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return data, tmp, proc.stdout


def test_teacher_pass_is_flip_averaged_and_lands_on_the_labelled_people(teacher_run):
    data, tmp, _ = teacher_run
    z = np.load(tmp / "t" / "lsp.npz")
    assert z["teacher"].shape == (12, 17, 3) and bool(z["flip"])
    coco = json.loads((data / "lsp" / "annotations.json").read_text())
    anns = {a["id"]: a for a in coco["annotations"]}
    d = []
    for aid, t in zip(z["ann_ids"], z["teacher"], strict=True):
        kps = np.array(anns[int(aid)]["keypoints"], float).reshape(17, 3)
        v = kps[:, 2] > 0
        d.append(np.median(np.linalg.norm(kps[v, :2] - t[v, :2], axis=1))
                 / np.sqrt(anns[int(aid)]["area"]))
    assert np.median(d) < 0.1  # the teacher agrees with LSP's human labels


def test_agreement_table_and_label_variants(teacher_run):
    data, tmp, stdout = teacher_run
    report = json.loads((tmp / "table.json").read_text())
    assert set(report["agreement"]) == set(SOURCES.split(","))
    row = report["agreement"]["lsp"]["left_knee"]
    assert row["n"] > 0 and 0 <= row["within_oks_0.5"] <= 1 and row["median_dist"] > 0
    assert "| lsp |" in stdout
    base = json.loads((data / "lsp" / "annotations.json").read_text())
    base = {a["id"]: np.array(a["keypoints"], float).reshape(17, 3)
            for a in base["annotations"]}

    def kps(variant, source):
        c = json.loads((tmp / "v" / variant / source / "annotations.json").read_text())
        return {a["id"]: np.array(a["keypoints"], float).reshape(17, 3)
                for a in c["annotations"]}, c["info"]["teacher_labels"]

    faces, info = kps("faces", "lsp")
    assert info["faces"] > 0
    changed = [aid for aid, k in faces.items() if not np.array_equal(k, base[aid])]
    assert changed, "no face points were added"
    for aid in changed:  # only face points are added; limbs untouched
        np.testing.assert_array_equal(faces[aid][5:], base[aid][5:])
        assert (faces[aid][:5, 2] > 0).any() and (base[aid][:5, 2] == 0).all()
    hips, info = kps("faces_hips", "lsp")
    shift = report["hip_shift"]["lsp"]
    if shift:
        moved = [aid for aid in changed if not np.allclose(hips[aid][11:13], base[aid][11:13])]
        assert moved and info["hips_moved"] > 0
        for aid in moved:  # hips only, by at most the shift x a generous person size
            np.testing.assert_array_equal(hips[aid][13:], base[aid][13:])
            assert np.linalg.norm(hips[aid][11:13, :2] - base[aid][11:13, :2], axis=1).max() < 30
    gated, info = kps("faces_hips_gated", "lspet")
    assert info["joints_from_teacher"] >= 0


def test_package_functions_give_what_the_tools_wrote(teacher_run, tmp_path):
    """The tools are thin wrappers: the package functions, called directly on the same
    people, give the same teacher keypoints, report and label files."""
    from evopose_sdk.training.teacher_labels import (
        VARIANTS,
        markdown_table,
        teacher_labels,
        teacher_pass,
    )

    data, tmp, stdout = teacher_run
    files = teacher_pass(data, _lightning(), tmp_path / "t", ["lsp"], threads=1, limit=12)
    assert files == {"lsp": tmp_path / "t" / "lsp.npz"}
    new, old = np.load(files["lsp"]), np.load(tmp / "t" / "lsp.npz")
    np.testing.assert_array_equal(new["ann_ids"], old["ann_ids"])
    np.testing.assert_allclose(new["teacher"], old["teacher"], atol=1e-4)
    report = teacher_labels(data, tmp / "t", tmp_path / "v")
    assert json.loads(json.dumps(report)) == json.loads((tmp / "table.json").read_text())
    assert markdown_table(report) in stdout
    for variant in VARIANTS:
        for source in ("lsp", "lspet", "parse"):
            rel = f"{variant}/{source}/annotations.json"
            assert (tmp_path / "v" / rel).read_text() == (tmp / "v" / rel).read_text()
    with pytest.raises(FileNotFoundError, match="no teacher keypoints"):
        teacher_labels(data, tmp_path / "t", tmp_path / "v2")  # only lsp was passed
    assert not (tmp_path / "v2").exists()


def test_rebuilt_checkpoint_matches_the_onnx_file_and_survives_fp16(tmp_path):
    data = require_data("lsp", "litehrnet", "julito", "parse", "lspet", "coco128")
    out = tmp_path / "s160.keras"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "recover_keras.py"),
                           str(REPO / "models" / "evopose2d-s-160.onnx"), "--out", str(out),
                           "--data", str(data), "--crops", "24"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "max |heatmap diff| vs ONNX" in proc.stderr
    from evopose_sdk.card import ModelCard
    from evopose_sdk.training.keypoint_sets import read_beside

    card = ModelCard.load(REPO / "models" / "evopose2d-s-160.onnx.json")
    assert read_beside(out).to_dict() == {"keypoint_names": card.keypoint_names,
                                          "flip_pairs": card.flip_pairs,
                                          "skeleton": card.skeleton}

    import keras
    import onnxruntime as ort

    from evopose_sdk.decode import decode_heatmaps
    from evopose_sdk.training import transfer
    from evopose_sdk.training.model import CUSTOM_OBJECTS

    model = keras.saving.load_model(out, custom_objects=CUSTOM_OBJECTS, compile=False)
    bn = model.get_layer("block3a_expand_bn").get_weights()
    assert not np.allclose(bn[3], 1.0, atol=0.05)  # real statistics, not identity
    from evopose_sdk.training.recover_keras import calibration_crops

    crops = calibration_crops(data, (160, 128), 8, seed=7)
    sess = ort.InferenceSession(str(REPO / "models" / "evopose2d-s-160.onnx"),
                                providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: crops})[0]
    got = model.predict(crops, verbose=0)
    assert np.abs(ref - got).max() < 2e-3
    npz = transfer.save_weights_npz(model, tmp_path / "w.weights.npz", meta={"step": 7})
    assert npz.stat().st_size < 0.6 * out.stat().st_size
    assert transfer.weights_npz_meta(npz) == {"step": 7}
    clone = keras.models.clone_model(model)
    report = transfer.initialize(clone, npz)
    assert report.count("full") == len(transfer.weights_of(model))
    half = clone.predict(crops, verbose=0)
    xy_ref, _ = decode_heatmaps(ref, "dark")
    xy_half, _ = decode_heatmaps(half, "dark")
    assert np.median(np.abs(xy_ref - xy_half)) < 0.05  # heatmap cells
