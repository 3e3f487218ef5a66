"""Face-keypoint ablation on dev_val: COCO AP over all, body-only and face-only keypoints.

    python benchmarks/face_ablation.py A.keras B.keras [--labels with,without] \
        [--data ../shared/data] [--json benchmarks/results/face_ablation.json]

Each checkpoint poses the 300 dev_val people on their ground-truth boxes (flip on, DARK).
The same results are scored three times with pycocotools: on all 17 keypoints, on the 12
body keypoints only (face labels removed from the ground truth) and on the 5 face keypoints
only (body labels removed; people left with no label are dropped). Also printed: the mean
per-keypoint OKS of face and body points. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from evopose_sdk.atomic import atomic_write_text  # noqa: E402
from evopose_sdk.nms import keypoint_oks  # noqa: E402
from evopose_sdk.training.evaluate_runtime import (  # noqa: E402
    coco_eval,
    dev_val_sources,
    load_dev_val,
)

REPO = Path(__file__).resolve().parents[1]
FACE = np.arange(5)
BODY = np.arange(5, 17)


def keep_keypoints(gt: dict, keep: np.ndarray) -> dict:
    """Copy of ``gt`` whose annotations label only the keypoints in ``keep``."""
    out = copy.deepcopy(gt)
    anns = []
    for a in out["annotations"]:
        k = np.asarray(a["keypoints"], float).reshape(17, 3)
        drop = np.setdiff1d(np.arange(17), keep)
        k[drop] = 0
        a["keypoints"] = k.reshape(-1).tolist()
        a["num_keypoints"] = int((k[:, 2] > 0).sum())
        if a["num_keypoints"] > 0:
            anns.append(a)
    out["annotations"] = anns
    return out


def face_body_oks(gt: dict, results: list[dict]) -> dict[str, float]:
    """Mean per-keypoint OKS of face and body points, result matched to GT by its box."""
    by_box = {(r["image_id"], tuple(np.round(r["bbox"], 1))): r for r in results}
    face, body = [], []
    for a in gt["annotations"]:
        r = by_box.get((a["image_id"], tuple(np.round(a["bbox"], 1))))
        if r is None:
            continue
        g = np.asarray(a["keypoints"], float).reshape(17, 3)
        p = np.asarray(r["keypoints"], float).reshape(17, 3)
        oks = keypoint_oks(p[:, :2], g[:, :2], a["area"])
        lab = g[:, 2] > 0
        face.extend(oks[FACE][lab[FACE]])
        body.extend(oks[BODY][lab[BODY]])
    return {"face_kp_oks": float(np.mean(face)) if face else 0.0,
            "body_kp_oks": float(np.mean(body)) if body else 0.0,
            "face_points": len(face), "body_points": len(body)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--labels", help="comma-separated names of the checkpoints")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" /
                    "face_ablation.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    labels = args.labels.split(",") if args.labels else [p.parent.parent.name
                                                         for p in args.checkpoints]
    if len(labels) != len(args.checkpoints):
        ap.error("give one label per checkpoint")
    for p in args.checkpoints:
        if not p.is_file():
            ap.error(f"checkpoint not found: {p}")

    from evopose_sdk.training import evaluate

    gt = load_dev_val(args.data)
    gt_body, gt_face = keep_keypoints(gt, BODY), keep_keypoints(gt, FACE)
    sources = dev_val_sources(args.data)
    rows = []
    for label, ckpt in zip(labels, args.checkpoints, strict=True):
        res = evaluate.evaluate_model(str(ckpt), sources, flip=True)
        row = {"label": label, "checkpoint": str(ckpt),
               "AP": coco_eval(gt, res.results)["AP"],
               "AP_body": coco_eval(gt_body, res.results)["AP"],
               "AP_face": coco_eval(gt_face, res.results)["AP"],
               **face_body_oks(gt, res.results)}
        rows.append(row)
    head = f"{'model':<28} {'AP':>6} {'AP body':>8} {'AP face':>8} {'face kp OKS':>12} {'body kp OKS':>12}"
    print(head)
    for r in rows:
        print(f"{r['label']:<28} {r['AP']:>6.3f} {r['AP_body']:>8.3f} {r['AP_face']:>8.3f} "
              f"{r['face_kp_oks']:>12.3f} {r['body_kp_oks']:>12.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps({"people": len(gt["annotations"]), "rows": rows},
                                            indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
