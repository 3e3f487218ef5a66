"""Person-box recall and false positives of the default detector against its score threshold.

Runs the detector once per ``dev_val`` image (110 images, 300 labelled people; see
:mod:`eval_dev_val`) at a low threshold and scores every threshold from the same boxes:

* recall: labelled people (``num_keypoints > 0``) matched by a detection with IoU >= 0.5
  (greedy, highest score first, one detection per person);
* false positives per image: detections matching no labelled person, not dropped by the
  images' ignore regions (crowds and people without keypoints; coco128 has none, so its
  unlabelled people count as false positives and the FP figure is an upper bound);
* precision = matched / (matched + FP).

    python benchmarks/detector_sweep.py --data ../shared/data

Prints a table and writes ``benchmarks/results/detector_sweep_<tag>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import socket
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_dev_val import box_iou, ignored_detections, load_dev_val, xywh_to_xyxy  # noqa: E402

from evopose_sdk.atomic import atomic_write_text  # noqa: E402
from evopose_sdk.detectors import make_detector  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
log = logging.getLogger("detector_sweep")


def match(det: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_min: float = 0.5) -> np.ndarray:
    """Bool (n,): detection i (in ``scores`` order, highest first) matched one GT box."""
    order = np.argsort(-scores, kind="stable")
    hit = np.zeros(len(det), bool)
    if len(det) == 0 or len(gt) == 0:
        return hit
    iou = box_iou(det, gt)
    free = np.ones(len(gt), bool)
    for i in order:
        cand = np.where(free & (iou[i] >= iou_min))[0]
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            free[j] = False
            hit[i] = True
    return hit


def sweep(data: Path, detector: str = "default", thresholds=THRESHOLDS) -> dict:
    """Recall / FP per image / precision of ``detector`` at each threshold on dev_val."""
    from tqdm import tqdm

    gt = load_dev_val(data)
    det = make_detector(detector, score_threshold=min(thresholds))
    people = {}
    for a in gt["annotations"]:
        if a["num_keypoints"] > 0 and not a["iscrowd"]:
            people.setdefault(a["image_id"], []).append(a["bbox"])
    per_image = []
    for im in tqdm(gt["images"], desc="detect", file=sys.stderr):
        image = cv2.imread(im["path"])
        boxes, scores = det.detect(image)
        g = xywh_to_xyxy(people.get(im["id"], [])) if im["id"] in people else np.zeros((0, 4))
        per_image.append((boxes, scores, g, im["ignore_boxes"]))
    rows = []
    n_people = sum(len(v) for v in people.values())
    for t in thresholds:
        tp = fp = 0
        for boxes, scores, g, ign in per_image:
            keep = scores >= t
            b, s = boxes[keep], scores[keep]
            hit = match(b, s, g)
            dropped = ignored_detections(b, ign, g) & ~hit
            tp += int(hit.sum())
            fp += int((~hit & ~dropped).sum())
        rows.append({"threshold": t, "recall": tp / max(n_people, 1), "matched": tp,
                     "false_positives": fp, "fp_per_image": fp / len(per_image),
                     "precision": tp / max(tp + fp, 1)})
    return {"detector": detector, "images": len(per_image), "people": n_people, "rows": rows}


def table(res: dict) -> str:
    lines = [f"{res['detector']} on dev_val: {res['images']} images, {res['people']} people",
             f"{'threshold':>9} {'recall':>7} {'FP/img':>7} {'precision':>9}"]
    for r in res["rows"]:
        lines.append(f"{r['threshold']:>9.2f} {r['recall']:>7.3f} {r['fp_per_image']:>7.2f} "
                     f"{r['precision']:>9.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--detector", default="default", help="detector spec (make_detector)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tag", default=f"{socket.gethostname()}_{dt.date.today():%Y%m%d}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    res = sweep(args.data, args.detector)
    print(table(res))
    out = args.out or REPO / "benchmarks" / "results" / f"detector_sweep_{args.tag}.json"
    atomic_write_text(out, json.dumps(res, indent=2))
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
