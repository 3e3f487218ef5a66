"""Shared helpers for the training tests (data location, tiny synthetic COCO sources)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EVOPOSE_DATA", REPO.parent / "shared" / "data"))


def require_data(*sources: str) -> Path:
    """The shared data root; the test fails naming what is missing (every developer and CI
    run has ../shared/data)."""
    missing = [s for s in sources if not (DATA_ROOT / s / "annotations.json").is_file()]
    if not DATA_ROOT.is_dir() or missing:
        pytest.fail(f"real pose data not found at {DATA_ROOT} (sources {missing or sources}); "
                    "set EVOPOSE_DATA to a folder of <source>/annotations.json + images/",
                    pytrace=False)
    return DATA_ROOT


def write_coco_source(folder: Path, names: list[str], people: list[list[list[float]]],
                      image_hw=(240, 320), boxes=None, skeleton=None) -> Path:
    """Write a one-image COCO keypoint source with the given people (K x 3 lists)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    h, w = image_hw
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.imwrite(str(folder / "images" / "a.jpg"), img)
    anns = []
    for i, kps in enumerate(people):
        kp = np.asarray(kps, float)
        lab = kp[kp[:, 2] > 0]
        if boxes is not None:
            box = list(boxes[i])
        else:
            x1, y1 = lab[:, :2].min(0) - 10
            x2, y2 = lab[:, :2].max(0) + 10
            box = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
        anns.append({"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": box,
                     "area": box[2] * box[3] * 0.53, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": int((kp[:, 2] > 0).sum())})
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h,
                        "split": "train"}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": names,
                            "skeleton": skeleton or []}]}
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    return path
