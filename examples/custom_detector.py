"""Plug your own person detector into PoseEstimator: any object with
``detect(image_bgr) -> (boxes_xyxy (n, 4) float32, scores (n,) float32)`` works.

Two examples: ground-truth boxes from a COCO annotation file (evaluate pose alone), and a
wrapper that keeps only the largest person (single-person apps: fitness, sign language).

    python examples/custom_detector.py .samples/bus.jpg --model path/to/model.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk import PoseEstimator, SSDPersonOnnxDetector
from evopose_sdk.registry import DEFAULT_MODEL


class LargestPerson:
    """Wraps another detector and keeps only its largest box."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self.inner.detect(image_bgr)
        if len(boxes) == 0:
            return boxes, scores
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        i = int(np.argmax(area))
        return boxes[i:i + 1], scores[i:i + 1]


class CocoBoxes:
    """Person boxes of one image from a COCO keypoint annotation file (score 1)."""

    def __init__(self, annotation_file: Path, file_name: str) -> None:
        data = json.loads(Path(annotation_file).read_text())
        ids = [im["id"] for im in data["images"] if im["file_name"] == file_name]
        xywh = np.array([a["bbox"] for a in data["annotations"]
                         if ids and a["image_id"] == ids[0] and not a.get("iscrowd", 0)],
                        np.float32).reshape(-1, 4)
        self.boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.boxes.copy(), np.ones(len(self.boxes), np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("image", type=Path)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--coco", type=Path, default=None,
                    help="COCO annotation JSON holding the image (use its boxes)")
    args = ap.parse_args(argv)
    detector = (CocoBoxes(args.coco, args.image.name) if args.coco
                else LargestPerson(SSDPersonOnnxDetector(score_threshold=0.5)))
    with PoseEstimator(args.model, detector=detector) as est:
        people = est(args.image)
    print(people)
    out = args.image.with_name(args.image.stem + "_custom.jpg")
    cv2.imwrite(str(out), people.draw(cv2.imread(str(args.image))))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
