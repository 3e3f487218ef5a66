#!/usr/bin/env python3
"""Ignore boxes for the coco128 dev_val images: the COCO people there without keypoint labels.

The shared data's coco128 labels hold only people with keypoints, so a detector that finds
the other people in those photos is charged a false positive for each (the shared README:
"ignore_boxes ... are unknown for this source"). The same photos' COCO *detection* labels,
in YOLO format in the public repository ``lightly-ai/coco128_yolo``
(``object_detection/labels/train2017/<id>.txt``, COCO annotations, CC BY 4.0), list every
non-crowd person; those matching no keypoint-labelled person (IoU < 0.5) become ignore boxes
(COCO xywh, image pixels; the coco128 dev_val images are uncropped and unscaled, checked).
Crowd regions are still unknown (the YOLO labels drop them).

    git clone https://github.com/lightly-ai/coco128_yolo /tmp/coco128_yolo
    python tools/coco128_ignore_boxes.py --labels /tmp/coco128_yolo --data ../shared/data

writes ``benchmarks/data/coco128_dev_val_ignore_boxes.json``, which
``evopose_sdk.training.evaluate_runtime.load_dev_val(..., extra_ignore=...)`` merges in
(``benchmarks/detector_sweep.py``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from evopose_sdk.tracking import box_iou
from evopose_sdk.training.evaluate_runtime import xywh_to_xyxy

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "data" / "coco128_dev_val_ignore_boxes.json"


def person_boxes(label_text: str, width: int, height: int) -> np.ndarray:
    """Person (class 0) rows of a YOLO detection label file -> (n, 4) xyxy pixels."""
    rows = np.array([[float(v) for v in line.split()] for line in label_text.splitlines()
                     if line.strip()]).reshape(-1, 5)
    p = rows[rows[:, 0] == 0, 1:]
    return np.stack([(p[:, 0] - p[:, 2] / 2) * width, (p[:, 1] - p[:, 3] / 2) * height,
                     (p[:, 0] + p[:, 2] / 2) * width, (p[:, 1] + p[:, 3] / 2) * height], axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, required=True,
                    help="a clone of github.com/lightly-ai/coco128_yolo (work tree or bare)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(args.labels), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()
    d = json.loads((args.data / "coco128" / "annotations.json").read_text())
    by_image: dict[int, list] = {}
    for a in d["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["bbox"])
    images = {}
    for im in d["images"]:
        if im.get("split") != "dev_val":
            continue
        if im["scale"] != 1.0 or im["crop_xywh"] != [0, 0, im["width"], im["height"]]:
            raise SystemExit(f"{im['file_name']} is cropped or scaled: map the boxes first")
        name = f"object_detection/labels/train2017/{Path(im['file_name']).stem}.txt"
        text = subprocess.run(["git", "-C", str(args.labels), "show", f"HEAD:{name}"],
                              capture_output=True, text=True, check=True).stdout
        boxes = person_boxes(text, im["width"], im["height"])
        labelled = xywh_to_xyxy(by_image.get(im["id"], []))
        best = box_iou(boxes, labelled).max(axis=1) if len(labelled) and len(boxes) \
            else np.zeros(len(boxes))
        extra = boxes[best < 0.5]
        images[im["file_name"]] = [[round(float(v), 2) for v in (b[0], b[1], b[2] - b[0],
                                                                  b[3] - b[1])] for b in extra]
    payload = {
        "what": "COCO people without keypoint labels in the coco128 dev_val images (xywh px)",
        "source": {"repository": "lightly-ai/coco128_yolo", "commit": commit,
                   "path": "object_detection/labels/train2017/<id>.txt (class 0 = person)",
                   "licence": "COCO annotations, CC BY 4.0 (COCO Consortium)"},
        "rule": "person boxes of the detection labels with IoU < 0.5 to every keypoint-labelled "
                "person of the shared coco128 annotations; crowd regions unknown",
        "made_by": "tools/coco128_ignore_boxes.py",
        "images": images}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    n = sum(len(v) for v in images.values())
    print(f"{n} ignore boxes in {sum(bool(v) for v in images.values())} of {len(images)} "
          f"images -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
