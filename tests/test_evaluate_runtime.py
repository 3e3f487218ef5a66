"""The benchmarks' shared evaluation (evopose_sdk.training.evaluate_runtime, evaluate_tracks):
dev_val ground truth, COCO stats that leave their arguments alone, ignore regions, and track
metrics, on the real data and the real track ground truth."""

from __future__ import annotations

import copy
import json

import numpy as np
from _training_helpers import REPO, require_data

from evopose_sdk.training import evaluate_runtime as er
from evopose_sdk.training.evaluate_tracks import evaluate_tracks


def test_dev_val_ground_truth_scores_itself_perfectly_and_is_not_changed():
    gt = er.load_dev_val(require_data(*er.DEV_SOURCES))
    assert len(gt["images"]) == 110 and len(gt["annotations"]) == 300
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in gt["annotations"]]
    before = copy.deepcopy((gt, results))
    stats = er.coco_eval(gt, results)
    assert set(stats) == set(er.ROW_STATS) and stats["AP"] == 1.0
    assert (gt, results) == before
    assert er.coco_eval(gt, []) == dict.fromkeys(er.ROW_STATS, 0.0)


def test_detection_in_an_ignore_region_is_dropped_unless_it_overlaps_a_labelled_person():
    det = np.array([[10, 10, 30, 30], [100, 100, 140, 180], [300, 300, 310, 310]], float)
    gt_xyxy = er.xywh_to_xyxy([[100, 100, 40, 80]])
    ignore = [[0, 0, 50, 50], [90, 90, 100, 100]]  # around det 0, and det 1's centre
    assert er.ignored_detections(det, ignore, gt_xyxy).tolist() == [True, False, False]
    assert er.ignored_detections(det, [], gt_xyxy).tolist() == [False] * 3


def test_ground_truth_tracks_score_full_coverage_and_no_switches():
    gt = json.loads((REPO / "benchmarks" / "data" / "track_gt_demo.json").read_text())
    ids = {p["id"]: i for i, p in enumerate(gt["people"])}
    rows = []
    for f in range(gt["frames"]):
        present = [p for p in gt["people"] if str(f) in p["boxes"]]
        rows.append({"frame": f, "boxes": [p["boxes"][str(f)] for p in present],
                     "ids": [ids[p["id"]] for p in present], "detector_boxes": None})
    ev = evaluate_tracks({"rows": rows}, gt, 0.3)
    assert ev["coverage"] == 1.0 and ev["id_switches"] == ev["fragments"] == ev["false"] == 0
    rows[5]["ids"] = [7] * len(rows[5]["ids"])  # one frame with other ids: two switches each
    assert evaluate_tracks({"rows": rows}, gt, 0.3)["id_switches"] == 2 * len(rows[5]["ids"])
