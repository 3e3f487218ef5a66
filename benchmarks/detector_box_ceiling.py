"""How much dev_val AP a better person detector can still add to a given pose model.

A top-down model scored on detector boxes is bounded, roughly, by the same model on the
ground-truth boxes. This script puts the two side by side for each detector at its shipped
operating point, and tries the two cheap ways to move detector-box AP without a new detector:

- the instance score: ``mean keypoint score x box_score ** a`` (the runtime uses ``a = 1``);
- boxes refined by a first pose pass: the box of the keypoints scoring above 0.2, padded 1.2x,
  mixed with the detector's box (``mix`` 1: the keypoint box alone), posed again.

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
from evopose_sdk.nms import oks_nms
from evopose_sdk.result import PoseResult
from evopose_sdk.topdown import instance_scores
from evopose_sdk.training.evaluate_runtime import (
    coco_eval,
    ignored_detections,
    load_dev_val,
    xywh_to_xyxy,
)

SCORE_EXPONENTS = (0.0, 0.5, 1.0, 2.0)
REFINE_MIX = (1.0, 0.5)


def keypoint_box(xy: np.ndarray, scores: np.ndarray, box: np.ndarray, thr: float = 0.2,
                 pad: float = 1.2) -> np.ndarray:
    """xyxy box of the keypoints (K, 2) scoring above ``thr``, padded ``pad`` times; ``box``
    when fewer than 4 do."""
    m = scores > thr
    if m.sum() < 4:
        return box
    lo, hi = xy[m].min(0), xy[m].max(0)
    c, half = (lo + hi) / 2, (hi - lo) * pad / 2
    return np.concatenate([c - half, c + half]).astype(np.float32)


def rescored(res: PoseResult, exponent: float, est: PoseEstimator) -> PoseResult:
    """``res`` (people in box order, no NMS) with instance scores ``kp x box ** exponent``,
    then OKS-NMS as the runtime does."""
    if not len(res):
        return res
    s = instance_scores(res.keypoint_scores, res.box_scores ** exponent)
    b = res.boxes_xyxy
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = oks_nms(res.keypoints_xy, s, areas, est.options.oks_nms,
                   np.asarray(est.card.oks_sigmas, np.float64)) \
        if len(b) > 1 else np.arange(len(b))
    return PoseResult(b[keep], res.box_scores[keep], res.keypoints[keep], s[keep],
                      res.track_ids[keep], res.image_hw, res.keypoint_names, res.skeleton)


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
            first = est.estimate_boxes(img, boxes, scores, nms=False)
            for a in SCORE_EXPONENTS:
                add(f"detector boxes, score kp x box^{a:g}", im, gxy, rescored(first, a, est),
                    True)
            for mix in REFINE_MIX:
                if not len(boxes):
                    continue
                kb = np.stack([keypoint_box(first.keypoints_xy[i], first.keypoint_scores[i],
                                            boxes[i]) for i in range(len(boxes))])
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
