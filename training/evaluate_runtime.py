"""COCO keypoint accuracy of exported model files through the runtime, on the ``dev_val`` split.

The evaluation every accuracy benchmark shares (``benchmarks/eval_dev_val.py``,
``detector_sweep.py``, ``int8_ablation.py``, ``face_ablation.py``, ``bench_runtime.py``):
pycocotools ``COCOeval(iouType="keypoints")`` (:func:`~evopose_sdk.training.evaluate.
coco_keypoint_stats`) on 300 people in 110 images (``images[].split == "dev_val"`` of
``coco128``, ``cocomini_train`` and ``tinycoco``, merged into one ground-truth dict in memory
by :func:`load_dev_val`; ids are unique across the files).

* :func:`run_ours`: a model file (``.onnx`` / ``.tflite`` with its card ``<file>.json``)
  through the real runtime, :class:`evopose_sdk.PoseEstimator` (2 threads), on ground-truth
  boxes (``estimate_boxes(image, gt_xyxy, nms=False)``) or on a detector's boxes
  (``est.estimate(image)``, any :func:`~evopose_sdk.detectors.make_detector` spec). COCO
  result score = the result's instance score (mean of the keypoint scores above the
  estimator's ``keypoint_score_floor`` x box score; box score = 1 with GT boxes). When that is
  0 for every person of a run, the mean keypoint score is used instead; the row says which
  (``score_source``).
* :func:`run_peer`: a pretrained MoveNet single-pose TFLite file (Lightning 192, Thunder 256;
  ``bash ../shared/peers/get_peers.sh``) on the same GT boxes, through
  :func:`~evopose_sdk.training.evaluate.evaluate_people` and
  :func:`~evopose_sdk.training.pseudo_labeller.peer_predict`: square crop around the GT box
  (centre, side = 1.25 x max(w, h)), pixel-centre affine; result score = mean keypoint score.
  No flip test.

Detector rows and ignore regions: ``cocomini_train`` and ``tinycoco`` images list
``ignore_boxes`` (crowd regions and people without keypoints, COCO xywh). A detection whose box
centre lies in an ignore box is dropped unless its box overlaps a labelled person's GT box with
IoU >= 0.5 (COCO also lets a detection match a real person before an ignore region). coco128
has no ignore information (unless ``load_dev_val(extra_ignore=...)`` gives it), so unlabelled
people it detects there count as false positives: detector-row AP is a lower bound.

``ms_per_person`` = wall time of the runtime call (crops, model, decode; the detector too in
detector rows) / people posed (GT boxes or detections), on whatever the machine is doing.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.tracking import box_iou
from evopose_sdk.training.evaluate import coco_keypoint_stats, evaluate_people

DEV_SOURCES = ("coco128", "cocomini_train", "tinycoco")
SPLIT = "dev_val"
THREADS = 2
#: MoveNet peers and their input sides (``<name>.tflite`` in the peers folder)
PEERS = {"movenet_lightning": 192, "movenet_thunder": 256}
#: the stats of a row (pycocotools ``stats[0:8]``)
ROW_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75")
log = logging.getLogger(__name__)

__all__ = ["DEV_SOURCES", "PEERS", "SPLIT", "THREADS", "coco_eval",
           "dev_val_sources", "ignored_detections", "load_dev_val", "run_ours", "run_peer",
           "xywh_to_xyxy"]


# --------------------------------------------------------------------------- data


def dev_val_sources(data: Path, sources: tuple[str, ...] = DEV_SOURCES) -> list[dict]:
    """The dev_val sources of the shared data folder as source dicts
    (:class:`~evopose_sdk.training.sources.SourceSpec`), for :mod:`~evopose_sdk.training.
    evaluate`."""
    return [{"annotations": str(Path(data) / s / "annotations.json"),
             "images": str(Path(data) / s / "images"), "split": SPLIT} for s in sources]


def load_dev_val(data: Path, sources: tuple[str, ...] = DEV_SOURCES,
                 extra_ignore: Path | None = None) -> dict[str, Any]:
    """Merge ``<source>/annotations.json`` dev_val images and their people into one COCO dict.

    Each image gets ``path`` (absolute file path), ``source`` and ``ignore_boxes`` (list of xywh,
    empty when unknown); annotations keep ``iscrowd``, ``area``, ``num_keypoints``.
    ``extra_ignore`` (e.g. ``benchmarks/data/coco128_dev_val_ignore_boxes.json``): a JSON of
    ``images: {file_name: [xywh]}`` for coco128 images, whose ignore boxes the shared data
    lacks; it fills them in (the detector rows then stop charging detections of unlabelled
    people as false positives).
    """
    data = Path(data)
    extra = json.loads(extra_ignore.read_text())["images"] if extra_ignore is not None else {}
    images: list[dict] = []
    anns: list[dict] = []
    categories = None
    for src in sources:
        ann_file = data / src / "annotations.json"
        if not ann_file.is_file():
            raise SystemExit(f"error: {ann_file} is missing; is --data the shared data folder?")
        d = json.loads(ann_file.read_text())
        categories = categories or d["categories"]
        keep = {}
        for im in d["images"]:
            if im.get("split") != SPLIT:
                continue
            keep[im["id"]] = im
            ignore = im.get("ignore_boxes")
            if ignore is None and src == "coco128" and im["file_name"] in extra:
                ignore = extra[im["file_name"]]
            images.append({"id": im["id"], "file_name": im["file_name"], "width": im["width"],
                           "height": im["height"], "source": src,
                           "path": str(data / src / "images" / im["file_name"]),
                           "ignore_boxes": [list(map(float, b)) for b in ignore or []],
                           "has_ignore_info": ignore is not None})
        for a in d["annotations"]:
            if a["image_id"] in keep:
                anns.append({k: a[k] for k in ("id", "image_id", "category_id", "iscrowd",
                                               "bbox", "area", "keypoints", "num_keypoints")})
    ids = [im["id"] for im in images]
    if len(set(ids)) != len(ids) or len({a["id"] for a in anns}) != len(anns):
        raise SystemExit("error: image or annotation ids repeat across the dev_val sources")
    return {"images": images, "annotations": anns, "categories": categories}


def xywh_to_xyxy(b: list[float] | np.ndarray) -> np.ndarray:
    """(n, 4) float64 xyxy boxes from xywh ones."""
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def ignored_detections(det_xyxy: np.ndarray, ignore_xywh: list, gt_xyxy: np.ndarray) -> np.ndarray:
    """Bool (n,): detection centre inside an ignore box and IoU < 0.5 with every labelled GT box."""
    n = len(det_xyxy)
    if n == 0 or not ignore_xywh:
        return np.zeros((n,), bool)
    ign = xywh_to_xyxy(ignore_xywh)
    c = (det_xyxy[:, :2] + det_xyxy[:, 2:]) / 2
    inside = ((c[:, None, 0] >= ign[None, :, 0]) & (c[:, None, 0] <= ign[None, :, 2])
              & (c[:, None, 1] >= ign[None, :, 1]) & (c[:, None, 1] <= ign[None, :, 3])).any(1)
    if len(gt_xyxy):
        inside &= box_iou(det_xyxy, gt_xyxy).max(axis=1) < 0.5
    return inside


def coco_eval(gt: dict, results: list[dict],
              sigmas: Sequence[float] | None = None) -> dict[str, float]:
    """:data:`ROW_STATS` of ``results`` on ``gt`` (OKS ``sigmas``: a card's ``oks_sigmas``;
    None: COCO's for 17 keypoints; 0 for every stat when there are no results). Neither
    argument is changed (pycocotools rewrites results)."""
    if not results:
        return {k: 0.0 for k in ROW_STATS}
    gt = dict(gt, annotations=[dict(a) for a in gt["annotations"]])  # COCOeval marks them
    stats = coco_keypoint_stats(gt, [dict(r) for r in results], sigmas)
    return {k: stats[k] for k in ROW_STATS}


# --------------------------------------------------------------------------- runs


def _progress(it=None, desc: str = "", quiet: bool = False, total: int | None = None):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(it, desc=desc, total=total, leave=False, disable=quiet, file=sys.stderr)


def _finish_scores(results: list[dict]) -> str:
    """Use instance scores; if all are 0, the mean keypoint score. Returns the source used."""
    if results and all(r["score"] == 0 for r in results):
        for r in results:
            r["score"] = float(np.mean(r["keypoints"][2::3]))
        return "mean_keypoint_score (instance score 0 for everyone)"
    return "instance_score"


def run_ours(model: Path, gt: dict, boxes: str, flip: bool, decode: str, quiet: bool,
             det_threshold: float | None = None, detector: str = "default",
             det_nms: float | None = None) -> dict:
    """One evaluation row of a model file through :class:`evopose_sdk.PoseEstimator`.

    ``boxes``: ``"gt"`` (ground-truth boxes) or ``"detector"``. Detector rows use
    ``detector`` (a :func:`~evopose_sdk.detectors.make_detector` spec); ``det_threshold`` /
    ``det_nms`` override its score threshold / NMS IoU (None = its own).
    """
    from evopose_sdk import PoseEstimator  # noqa: PLC0415

    model = Path(model)
    kw: dict[str, Any] = dict(model=str(model), flip_test=flip, decode=decode, threads=THREADS,
                              detector_score_threshold=det_threshold, detector_nms_iou=det_nms)
    kw["detector"] = detector if boxes == "detector" else "whole-image"
    by_image: dict[int, list[dict]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    results: list[dict] = []
    elapsed = 0.0
    people = dropped = 0
    with PoseEstimator(**kw) as est:
        card = est.card
        first = gt["images"][0]  # warm-up call, not timed (session start-up, allocations)
        warm = cv2.imread(first["path"], cv2.IMREAD_COLOR)
        if warm is not None:
            h, w = warm.shape[:2]
            est.estimate_boxes(warm, [[0, 0, w, h]])
        for im in _progress(gt["images"], f"{model.name} {boxes} flip={flip} {decode}", quiet):
            img = cv2.imread(im["path"], cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"error: cannot read {im['path']}")
            anns = by_image.get(im["id"], [])
            gt_xyxy = xywh_to_xyxy([a["bbox"] for a in anns]) if anns else np.zeros((0, 4))
            t0 = time.perf_counter()
            if boxes == "gt":
                res = est.estimate_boxes(img, gt_xyxy.astype(np.float32), nms=False)
            else:
                res = est.estimate(img)
            elapsed += time.perf_counter() - t0
            people += len(res)
            if boxes == "detector" and len(res):
                ign = ignored_detections(res.boxes_xyxy.astype(np.float64), im["ignore_boxes"],
                                         gt_xyxy)
                dropped += int(ign.sum())
                res = res[~ign]
            results.extend(res.to_coco(im["id"]))
    zero = sum(r["score"] == 0 for r in results)
    score_source = _finish_scores(results)
    row = dict(model=card.name, file=model.name, precision=card.precision,
               format=card.file_format, input_hw=list(card.input_size), boxes=boxes, flip=flip,
               decode=decode, detector=detector if boxes == "detector" else None,
               detector_threshold=det_threshold, detector_nms=det_nms,
               score_source=score_source, zero_score_results=zero,
               people_posed=people,
               detections_ignored=dropped, results=len(results),
               ms_per_person=1e3 * elapsed / max(people, 1),
               ms_per_image=1e3 * elapsed / max(len(gt["images"]), 1))
    row.update(coco_eval(gt, results, card.oks_sigmas))
    return row


def run_peer(path: Path, side: int, gt: dict, data: Path, quiet: bool) -> dict:
    """One evaluation row of a MoveNet single-pose TFLite file on the GT boxes of ``gt``'s
    images (:func:`load_dev_val` of the shared data folder ``data``)."""
    from evopose_sdk.training.pseudo_labeller import (  # noqa: PLC0415
        MoveNetSinglePose,
        peer_predict,
    )

    path = Path(path)
    try:
        peer = MoveNetSinglePose(path, THREADS)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if peer.side != side:
        log.warning("%s: input side %d, expected %d; using the file's", path.name, peer.side,
                    side)
        side = peer.side
    predict = peer_predict(peer)
    elapsed = 0.0
    bar = _progress(desc=path.stem, quiet=quiet, total=len(gt["annotations"]))

    def timed(image_rgb: np.ndarray, boxes_xyxy: list, kset) -> tuple[np.ndarray, np.ndarray]:
        nonlocal elapsed
        t0 = time.perf_counter()
        out = predict(image_rgb, boxes_xyxy, kset)
        elapsed += time.perf_counter() - t0
        bar.update(len(boxes_xyxy))
        return out

    sources = tuple(dict.fromkeys(im["source"] for im in gt["images"]))
    with bar:
        res = evaluate_people(timed, dev_val_sources(data, sources),
                              image_ids=[im["id"] for im in gt["images"]], split_visible=None)
    row = dict(model=path.stem, file=path.name, precision=np.dtype(peer.dtype).name,
               format="tflite", input_hw=[side, side], boxes="gt", flip=False, decode="regression",
               score_source="mean_keypoint_score", people_posed=len(res.results),
               detections_ignored=0, results=len(res.results),
               ms_per_person=1e3 * elapsed / max(len(res.results), 1),
               ms_per_image=1e3 * elapsed / max(len(gt["images"]), 1))
    row.update({k: res.stats[k] for k in ROW_STATS} if res.results else coco_eval(gt, []))
    return row
