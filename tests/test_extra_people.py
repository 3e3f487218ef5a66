"""Unlabelled people found in training images (training/extra_people.py), with the shipped
detector and the real teacher (skips without /tmp/peers: `bash ../shared/peers/get_peers.sh`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _training_helpers import require_data

from evopose_sdk.tracking import box_iou
from evopose_sdk.training import extra_people as xp
from evopose_sdk.training.sources import load_sources
from evopose_sdk.training.teacher import TeacherTargets


@pytest.fixture(scope="module")
def teacher():
    path = TeacherTargets().path
    if not path.is_file():
        pytest.skip(f"teacher {path} missing: run `bash ../shared/peers/get_peers.sh`")
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose

    return MoveNetSinglePose(path, 1)


def test_a_person_whose_label_is_removed_is_found_and_loads_as_teacher_only(tmp_path, teacher):
    """Drop the labels of the biggest person of a few real coco128 photos: the finder must
    return that person's box, and no box on a person that is still labelled."""
    from evopose_sdk.detectors import make_detector

    root = require_data("coco128") / "coco128"
    coco = json.loads((root / "annotations.json").read_text())
    train = [im for im in coco["images"] if im.get("split", "train") == "train"][:12]
    ids = {im["id"] for im in train}
    removed = {}
    for im in train:
        people = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        if len(people) >= 1:
            big = max(people, key=lambda a: a["bbox"][2] * a["bbox"][3])
            if big["bbox"][3] >= 100:
                removed[big["id"]] = big
    assert len(removed) >= 3
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    for im in train:
        shutil.copy(root / "images" / im["file_name"], src / "images" / im["file_name"])
    kept = [a for a in coco["annotations"] if a["image_id"] in ids and a["id"] not in removed]
    (src / "annotations.json").write_text(json.dumps(
        dict(coco, images=train, annotations=kept)))
    people = xp.find_unlabelled_people(src, make_detector("default"), teacher, min_score=0.5)
    def xyxy(a):
        x, y, w, h = a["bbox"]
        return [x, y, x + w, y + h]

    hits = []
    for gone in removed.values():
        found = [xyxy(p) for p in people if p["image_id"] == gone["image_id"]]
        hits.append(bool(found) and (box_iou([xyxy(gone)], found) > 0.5).any())
        still = [xyxy(a) for a in kept if a["image_id"] == gone["image_id"]
                 and a["bbox"][3] > 60]
        if found and still:
            assert not (box_iou(found, still) > 0.5).any(), "a labelled person was found again"
    assert np.mean(hits) >= 0.6, f"found {sum(hits)} of {len(hits)} unlabelled people"
    path = xp.write_source(tmp_path / "extra", src, people, gate=0.0)
    rec = load_sources([{"annotations": str(path), "images": str(src / "images"),
                         "min_keypoints": 0}])
    assert len(rec) == len(people) and (rec.keypoints[:, :, 2] == 0).all()


def test_the_teacher_gate_is_measured_on_labelled_people(teacher):
    """On real coco128 people the teacher's OKS to the human labels rises with its mean
    score, and the gate is the lowest score bin that reaches median OKS 0.5."""
    import cv2

    root = require_data("coco128") / "coco128"
    coco = json.loads((root / "annotations.json").read_text())
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    anns = [a for a in coco["annotations"] if a.get("num_keypoints", 0) >= 5][:60]
    tk = np.stack([teacher(cv2.imread(str(root / "images" / files[a["image_id"]])), a["bbox"])
                   for a in anns])
    gt = np.stack([np.asarray(a["keypoints"], float).reshape(17, 3) for a in anns])
    rows = xp.teacher_gate_table(tk, gt, np.array([a["area"] for a in anns]),
                                 edges=(0.0, 0.4, 1.01))
    assert sum(r["people"] for r in rows) == len(anns)
    lo, hi = rows
    assert hi["median_oks"] > lo["median_oks"]
    gate = xp.gate_from_table(rows, min_oks=0.5, min_people=5)
    assert gate in (0.0, 0.4)
    assert (gate == 0.4) == (lo["median_oks"] < 0.5 or lo["people"] < 5)
    # a bin too small to trust counts as failing: the gate never opens below it
    small = [dict(rows[0], people=2, median_oks=0.9), rows[1]]
    assert xp.gate_from_table(small, min_oks=0.5, min_people=5) == 0.4
