"""More distinct people: the unlabelled people in the training images, found by the person
detector and kept where the teacher is confident about them.

LSP, LSPET and PARSE label one athlete a photo; the other players, referees and spectators
in the same photos carry no label. :func:`find_unlabelled_people` runs the runtime's
detector over a source's training images, drops boxes that overlap a labelled person, runs
the teacher (MoveNet Thunder, flip-averaged, as the teacher pass does) on each new person and
writes a COCO source of them with *no* keypoint labels (``num_keypoints`` 0) and the
teacher's mean keypoint score. They train only through the ``teacher_targets`` step, which
labels each augmented view; the source sets ``min_keypoints: 0`` so that they load.

The confidence threshold is measured, not guessed: :func:`teacher_gate_table` scores the
teacher against the human labels of the labelled people of the same sources (OKS by teacher
mean score), and the gate is the lowest score whose people reach a median OKS of 0.5.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.skeleton import COCO_SIGMAS
from evopose_sdk.tracking import box_iou

log = logging.getLogger(__name__)


def oks(pred_xy: np.ndarray, gt: np.ndarray, area: float) -> float:
    """Object keypoint similarity of (K, 2) predictions against (K, 3) labels (COCO)."""
    vis = gt[:, 2] > 0
    if not vis.any():
        return float("nan")
    d2 = ((pred_xy - gt[:, :2]) ** 2).sum(axis=1)
    var = (2 * COCO_SIGMAS) ** 2
    e = d2 / (var * max(area, 1.0) * 2)
    return float(np.exp(-e[vis]).mean())


def teacher_gate_table(teacher_kps: np.ndarray, labels: np.ndarray, areas: np.ndarray,
                       edges: Sequence[float] = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 1.01)) -> list[dict]:
    """Median OKS of the teacher against human labels, by the teacher's mean score.

    Args:
        teacher_kps: (N, 17, 3) teacher keypoints (x, y, score) of labelled people.
        labels: (N, 17, 3) their human labels; areas: (N,) box areas in pixels^2.

    Returns:
        one row per score bin: ``lo``, ``hi``, ``people``, ``median_oks``.
    """
    mean_score = teacher_kps[:, :, 2].mean(axis=1)
    o = np.array([oks(t[:, :2], g, a) for t, g, a in zip(teacher_kps, labels, areas,
                                                          strict=True)])
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (mean_score >= lo) & (mean_score < hi) & np.isfinite(o)
        rows.append({"lo": lo, "hi": hi, "people": int(m.sum()),
                     "median_oks": round(float(np.median(o[m])), 3) if m.any() else None})
    return rows


def gate_from_table(rows: list[dict], min_oks: float = 0.5, min_people: int = 20) -> float:
    """The lowest bin edge from which every bin reaches ``min_oks``; a bin of fewer than
    ``min_people`` people counts as failing (too few to trust)."""
    gate = rows[-1]["hi"]
    for r in reversed(rows):
        if r["people"] < min_people or (r["median_oks"] or 0.0) < min_oks:
            break
        gate = r["lo"]
    return float(gate)


def find_unlabelled_people(source: str | os.PathLike, detector, teacher, *,
                           split: str = "train", min_score: float = 0.5,
                           min_height: float = 64.0, max_iou: float = 0.3,
                           limit: int | None = None) -> list[dict]:
    """Detected people of ``source``'s images that no annotation covers.

    Args:
        source: folder with ``annotations.json`` and ``images/``.
        detector: an :class:`evopose_sdk.detectors.Detector` (BGR image -> boxes, scores).
        teacher: a :class:`~evopose_sdk.training.pseudo_labeller.MoveNetSinglePose`.
        min_score: detector score; min_height: box height in pixels; max_iou: largest
            overlap (IoU, or the share of the new box inside a labelled one) allowed.

    Returns:
        COCO annotations (``bbox`` xywh, zero ``keypoints``, ``teacher_score``,
        ``teacher_keypoints`` 51 numbers, ``det_score``), ids from 1, on the source's images.
    """
    from tqdm import tqdm  # noqa: PLC0415

    src = Path(source)
    coco = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    images = [im for im in coco["images"] if im.get("split", split) == split]
    if limit:
        images = images[:limit]
    labelled: dict[int, list] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        labelled.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    out: list[dict] = []
    for im in tqdm(images, desc=src.name, mininterval=10):
        img = cv2.imread(str(src / "images" / im["file_name"]), cv2.IMREAD_COLOR)
        if img is None:
            continue
        boxes, scores = detector.detect(img)
        known = np.asarray(labelled.get(im["id"], []), np.float64).reshape(-1, 4)
        for box, score in zip(boxes, scores, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            if score < min_score or y2 - y1 < min_height:
                continue
            if len(known):
                iou = box_iou(np.asarray([box], np.float64), known)[0]
                ix = (np.clip(np.minimum(x2, known[:, 2]) - np.maximum(x1, known[:, 0]), 0, None)
                      * np.clip(np.minimum(y2, known[:, 3]) - np.maximum(y1, known[:, 1]), 0,
                                None))
                inside = ix / max((x2 - x1) * (y2 - y1), 1.0)
                if (iou > max_iou).any() or (inside > 0.5).any():
                    continue
            tk = teacher(img, [x1, y1, x2 - x1, y2 - y1], flip=True)
            out.append({"id": len(out) + 1, "image_id": im["id"], "category_id": 1,
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                                 round(y2 - y1, 2)],
                        "area": round((x2 - x1) * (y2 - y1), 1), "iscrowd": 0,
                        "num_keypoints": 0, "keypoints": [0] * 51,
                        "det_score": round(float(score), 3),
                        "teacher_score": round(float(tk[:, 2].mean()), 3),
                        "teacher_keypoints": [round(float(v), 2) for v in tk.reshape(-1)]})
    return out


def write_source(dest: str | os.PathLike, source: str | os.PathLike, people: list[dict],
                 gate: float) -> Path:
    """Write ``dest/annotations.json``: the people at or above the teacher ``gate`` on the
    images of ``source`` (its category; images keep their file names, relative to the
    source's ``images/``, which the recipe names)."""
    src = Path(source)
    coco = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    kept = [p for p in people if p["teacher_score"] >= gate]
    ids = {p["image_id"] for p in kept}
    out = {"info": {"description": f"unlabelled people of {src.name} (detector + teacher gate "
                                   f"{gate})", "people": len(kept)},
           "images": [im for im in coco["images"] if im["id"] in ids],
           "annotations": kept, "categories": coco["categories"]}
    path = Path(dest) / "annotations.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(out))
    return path
