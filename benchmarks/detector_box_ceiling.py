"""How much dev_val AP a better person detector can still add to a given pose model.

A top-down model scored on detector boxes is bounded, roughly, by the same model on the
ground-truth boxes. This script puts the two side by side for each detector at its shipped
operating point, and tries the two cheap ways to move detector-box AP without a new detector:

- the instance score: ``mean keypoint score x box_score ** a`` (the runtime uses ``a = 1``);
- boxes refined by a first pose pass: :func:`evopose_sdk.follow.keypoint_boxes` (the boxes
  video follows people with: keypoints scoring 0.2, grown 0.1 x size on each side), mixed
  with the detector's box (``mix`` 1: the keypoint box alone), posed again.

Usage (from the repo root; about 2 minutes per detector on one idle core)::

    python benchmarks/detector_box_ceiling.py --model models/evopose2d-s.onnx \
        --detectors default yolox --out benchmarks/results/detector_box_ceiling.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk import PoseEstimator
from evopose_sdk.follow import keypoint_boxes
from evopose_sdk.result import PoseResult
from evopose_sdk.training.evaluate_runtime import (
    coco_eval,
    ignored_detections,
    load_dev_val,
    xywh_to_xyxy,
)

SCORE_EXPONENTS = (0.0, 0.5, 1.0, 2.0)
REFINE_MIX = (1.0, 0.5)


def run(model: Path, detector: str, data: Path) -> list[dict]:
    gt = load_dev_val(data)
    by_image: dict[int, list] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    variants: dict[str, list[dict]] = {}

    def add(name: str, im: dict, gxy: np.ndarray, res: PoseResult, detector_boxes: bool) -> None:
        if detector_boxes and len(res):
            res = res[~ignored_detections(res.boxes_xyxy.astype(np.float64),
                                          im["ignore_boxes"], gxy)]
        variants.setdefault(name, []).extend(res.to_coco(im["id"]))

    t0 = time.perf_counter()
    with PoseEstimator(model=str(model), flip_test=True, threads=1, detector=detector) as est:
        for im in gt["images"]:
            img = cv2.imread(im["path"], cv2.IMREAD_COLOR)
            anns = by_image.get(im["id"], [])
            gxy = xywh_to_xyxy([a["bbox"] for a in anns]) if anns else np.zeros((0, 4))
            if len(gxy):
                add("ground-truth boxes", im, gxy,
                    est.estimate_boxes(img, gxy.astype(np.float32), nms=False), False)
            boxes, scores = est.detect(img)
            for a in SCORE_EXPONENTS:  # the runtime's chain, with box scores ** a
                add(f"detector boxes, score kp x box^{a:g}", im, gxy,
                    est.estimate_boxes(img, boxes, scores ** a, nms=True), True)
            if not len(boxes):
                continue
            # the keypoint boxes that follow people between video detector frames
            kb = keypoint_boxes(est.estimate_boxes(img, boxes, scores, nms=False),
                                min_keypoints=4)
            for mix in REFINE_MIX:
                refined = mix * kb + (1 - mix) * boxes
                add(f"refined boxes, mix {mix:g}", im, gxy,
                    est.estimate_boxes(img, refined, scores, nms=True), True)
    rows = []
    for name, results in variants.items():
        st = coco_eval(gt, results)
        rows.append({"detector": detector, "variant": name, "results": len(results),
                     **{k: round(float(st[k]), 4) for k in ("AP", "AP50", "AP75", "AR")}})
    rows[0]["seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/evopose2d-s.onnx"))
    ap.add_argument("--detectors", nargs="+", default=["default", "yolox"])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = [r for d in args.detectors for r in run(args.model, d, args.data)]
    print(f"dev_val, {args.model.name}, flip on, each detector at its shipped point\n")
    print("| detector | variant | AP | AP50 | AP75 | AR |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['detector']} | {r['variant']} | {r['AP']:.3f} | {r['AP50']:.3f} | "
              f"{r['AP75']:.3f} | {r['AR']:.3f} |")
    if args.out is not None:
        from evopose_sdk.atomic import atomic_write_text  # noqa: PLC0415

        atomic_write_text(args.out, json.dumps({
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "model": str(args.model),
            "command": "python benchmarks/detector_box_ceiling.py " + " ".join(argv or []),
            "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
