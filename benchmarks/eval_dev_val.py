"""COCO keypoint accuracy (AP/AP50/AP75/AR) on the ``dev_val`` split of the shared data.

Evaluates, with pycocotools ``COCOeval(iouType="keypoints")`` on 300 people in 110 images
(``images[].split == "dev_val"`` of ``coco128``, ``cocomini_train`` and ``tinycoco``, merged
into one ground-truth dict in memory; ids are unique across the files):

1. each given model file (``.onnx`` / ``.tflite`` with its card ``<file>.json``) through the
   real runtime, :class:`evopose_sdk.PoseEstimator` (2 threads):

   * ground-truth boxes, flip test on and off (``estimate_boxes(image, gt_xyxy, nms=False)``);
   * the default detector (SSD-MobileNetV2, ``est.estimate(image)``), flip test on
     (:func:`run_ours` takes any detector spec: ``detector_sweep.py --ap``);
   * for the first fp32 ONNX file also decoder ``"quarter"`` next to ``"dark"`` (GT boxes,
     flip on), so the better default decoder can be picked.

   COCO result score = the result's instance score (mean of the keypoint scores above the
   estimator's ``keypoint_score_floor`` x box score; box score = 1 with GT boxes). When that
   is 0 for every person of a run, the mean keypoint score is used instead; the JSON row says
   which (``score_source``).

2. pretrained peers on the same GT boxes: MoveNet single-pose Lightning (192) and Thunder (256)
   TFLite files from ``bash ../shared/peers/get_peers.sh`` (default ``/tmp/peers/models``).
   Square crop around the GT box (centre, side = 1.25 x max(w, h)), pixel-centre affine from
   :mod:`evopose_sdk.geometry`; output (y, x, score) normalised to the crop is mapped to crop
   pixel centres (``v * side - 0.5``) and back through the inverse affine; result score = mean
   keypoint score. No flip test.

Detector rows and ignore regions: ``cocomini_train`` and ``tinycoco`` images list
``ignore_boxes`` (crowd regions and people without keypoints, COCO xywh). A detection whose box
centre lies in an ignore box is dropped unless its box overlaps a labelled person's GT box with
IoU >= 0.5 (COCO also lets a detection match a real person before an ignore region). coco128
has no ignore information, so unlabelled people it detects there count as false positives:
detector-row AP is a lower bound.

``ms/person`` = wall time of the runtime call (crops, model, decode; the detector too in
detector rows) / people posed (GT boxes or detections), on whatever the machine is doing.

    python benchmarks/eval_dev_val.py --models models/evopose2d-s.onnx models/evopose2d-s_int8.tflite \\
        --data ../shared/data --peers /tmp/peers/models
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import io
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEV_SOURCES = ("coco128", "cocomini_train", "tinycoco")
SPLIT = "dev_val"
THREADS = 2
PEERS = {"movenet_lightning": 192, "movenet_thunder": 256}
log = logging.getLogger("eval_dev_val")


# --------------------------------------------------------------------------- data


#: COCO people without keypoint labels in the coco128 dev_val images (tools/coco128_ignore_boxes.py)
COCO128_IGNORE = REPO / "benchmarks" / "data" / "coco128_dev_val_ignore_boxes.json"


def load_dev_val(data: Path, sources: tuple[str, ...] = DEV_SOURCES,
                 extra_ignore: Path | None = None) -> dict[str, Any]:
    """Merge ``<source>/annotations.json`` dev_val images and their people into one COCO dict.

    Each image gets ``path`` (absolute file path), ``source`` and ``ignore_boxes`` (list of xywh,
    empty when unknown); annotations keep ``iscrowd``, ``area``, ``num_keypoints``.
    ``extra_ignore`` (e.g. :data:`COCO128_IGNORE`): a JSON of ``images: {file_name: [xywh]}``
    for coco128 images, whose ignore boxes the shared data lacks; it fills them in (the
    detector rows then stop charging detections of unlabelled people as false positives).
    """
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
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


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


def coco_eval(gt: dict, results: list[dict]) -> dict[str, float]:
    """pycocotools keypoint COCOeval -> AP, AP50, AP75, APm, APl, AR (+ AR50, AR75)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return {k: 0.0 for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75")}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {k: copy.deepcopy(gt[k]) for k in ("images", "annotations", "categories")}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.imgIds = sorted(im["id"] for im in gt["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = [float(v) for v in ev.stats]
    return dict(AP=s[0], AP50=s[1], AP75=s[2], APm=s[3], APl=s[4], AR=s[5], AR50=s[6], AR75=s[7])


# --------------------------------------------------------------------------- runs


def _progress(it, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(it, desc=desc, leave=False, disable=quiet, file=sys.stderr)


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
    """One evaluation row through :class:`evopose_sdk.PoseEstimator`.

    Detector rows use ``detector`` (a :func:`~evopose_sdk.detectors.make_detector` spec);
    ``det_threshold`` / ``det_nms`` override its score threshold / NMS IoU (None = its own).
    """
    from evopose_sdk import PoseEstimator

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
    row.update(coco_eval(gt, results))
    return row


def run_peer(path: Path, side: int, gt: dict, quiet: bool) -> dict:
    """MoveNet single-pose TFLite on a 1.25x square crop around each GT box."""
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose

    try:
        peer = MoveNetSinglePose(path, THREADS)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if peer.side != side:
        log.warning("%s: input side %d, expected %d; using the file's", path.name, peer.side,
                    side)
        side = peer.side
    dtype = peer.dtype
    images = {im["id"]: im for im in gt["images"]}
    results: list[dict] = []
    elapsed = 0.0
    cache: dict[int, np.ndarray] = {}
    for a in _progress(gt["annotations"], path.stem, quiet):
        im = images[a["image_id"]]
        if im["id"] not in cache:
            cache.clear()
            cache[im["id"]] = cv2.imread(im["path"], cv2.IMREAD_COLOR)
        t0 = time.perf_counter()
        kp = peer(cache[im["id"]], a["bbox"])
        elapsed += time.perf_counter() - t0
        results.append({"image_id": im["id"], "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in kp.reshape(-1)],
                        "score": float(kp[:, 2].mean()), "bbox": [float(v) for v in a["bbox"]]})
    row = dict(model=path.stem, file=path.name, precision=np.dtype(dtype).name,
               format="tflite", input_hw=[side, side], boxes="gt", flip=False, decode="regression",
               score_source="mean_keypoint_score", people_posed=len(results),
               detections_ignored=0, results=len(results),
               ms_per_person=1e3 * elapsed / max(len(results), 1),
               ms_per_image=1e3 * elapsed / max(len(gt["images"]), 1))
    row.update(coco_eval(gt, results))
    return row


# --------------------------------------------------------------------------- main


def table(rows: list[dict]) -> str:
    head = "| model | file | boxes | flip | decoder | AP | AP50 | AP75 | AR | ms/person |"
    lines = [head, "|" + "---|" * 5 + "---:|" * 5]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['file']} | {r.get('boxes', '')} | | | "
                         f"skipped: {r['skipped']} | | | | |")
            continue
        boxes = r["boxes"]
        if r.get("detector_threshold") is not None:
            boxes += f" >={r['detector_threshold']:g}"
        lines.append(f"| {r['model']} | {r['file']} | {boxes} | {'on' if r['flip'] else 'off'}"
                     f" | {r['decode']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | "
                     f"{r['AR']:.3f} | {r['ms_per_person']:.1f} |")
    return "\n".join(lines)


def plan(models: list[Path], quick: bool, det_thresholds: list[float] | None = None
         ) -> list[tuple[Path, str, bool, str, float | None]]:
    """(model, boxes, flip, decode, detector threshold) runs; decoder comparison and extra
    detector thresholds on the first fp32 ONNX file."""
    runs: list[tuple[Path, str, bool, str, float | None]] = []
    onnx_done = False
    for m in models:
        runs.append((m, "gt", True, "dark", None))
        first_onnx = m.suffix.lower() == ".onnx" and not onnx_done
        if first_onnx:
            runs.append((m, "gt", True, "quarter", None))
            onnx_done = True
        if not quick:
            runs.append((m, "gt", False, "dark", None))
            runs.append((m, "detector", True, "dark", None))
        if first_onnx:
            runs.extend((m, "detector", True, "dark", t) for t in det_thresholds or [])
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, required=True,
                    help="model files (.onnx / .tflite), each with its card <file>.json")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="shared data folder (default: ../shared/data from the repo root)")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/peers/models"),
                    help="folder with movenet_{lightning,thunder}.tflite (get_peers.sh)")
    ap.add_argument("--no-peers", action="store_true", help="skip the MoveNet rows")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/eval_dev_val_<tag>.json)")
    ap.add_argument("--tag", default=None, help="tag in the default output name (default: "
                    "host_date)")
    ap.add_argument("--quick", action="store_true",
                    help="first 20 dev_val images only, GT boxes flip on (+ quarter) only")
    ap.add_argument("--detector-thresholds", nargs="+", type=float, default=None,
                    help="extra detector rows (flip on) for the first ONNX file at these "
                         "detector score thresholds")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evopose_sdk").setLevel(logging.WARNING)

    if not args.data.is_dir():
        print(f"error: data folder {args.data} not found; pass --data /path/to/shared/data",
              file=sys.stderr)
        return 2
    for m in args.models:
        if not m.is_file():
            print(f"error: model file {m} not found", file=sys.stderr)
            return 2
        if m.suffix.lower() not in (".onnx", ".tflite"):
            print(f"error: {m} is not an .onnx or .tflite file", file=sys.stderr)
            return 2
    gt = load_dev_val(args.data)
    if args.quick:
        gt["images"] = gt["images"][:20]
        keep = {im["id"] for im in gt["images"]}
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    log.info("dev_val: %d images, %d people (%s)", len(gt["images"]), len(gt["annotations"]),
             ", ".join(f"{s}: {sum(im['source'] == s for im in gt['images'])}"
                       for s in DEV_SOURCES))

    rows: list[dict] = []
    t_start = time.perf_counter()
    for model, boxes, flip, decode, det_t in plan(args.models, args.quick,
                                                  args.detector_thresholds):
        try:
            row = run_ours(model, gt, boxes, flip, decode, args.quiet, det_t)
        except Exception as exc:  # one broken file must not lose the other rows
            log.error("%s %s flip=%s %s failed: %s", model.name, boxes, flip, decode, exc)
            row = dict(model=model.stem, file=model.name, boxes=boxes, flip=flip, decode=decode,
                       skipped=f"{type(exc).__name__}: {exc}")
        log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
        rows.append(row)
    if not args.no_peers:
        for name, side in PEERS.items():
            path = args.peers / f"{name}.tflite"
            if not path.is_file():
                log.warning("%s not found: run bash ../shared/peers/get_peers.sh", path)
                rows.append(dict(model=name, file=path.name, boxes="gt",
                                 skipped=f"{path} missing (run ../shared/peers/get_peers.sh)"))
                continue
            row = run_peer(path, side, gt, args.quiet)
            log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
            rows.append(row)

    print(table(rows))
    tag = args.tag or f"{socket.gethostname()}_{dt.datetime.now():%Y%m%d-%H%M}"
    out = args.out or REPO / "benchmarks" / "results" / f"eval_dev_val_{tag}.json"
    payload = dict(
        split=SPLIT, sources=list(DEV_SOURCES), data=str(args.data.resolve()),
        images=len(gt["images"]), people=len(gt["annotations"]), quick=args.quick,
        threads=THREADS, created=dt.datetime.now().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t_start, 1),
        notes=["COCOeval iouType=keypoints, default maxDets 20 and area ranges; AR = stats[5]",
               "coco128 areas are mostly bbox*0.53 (no segmentation area in its YOLO labels)",
               "detector rows: detections with centre in an ignore box and IoU<0.5 with every "
               "labelled GT box are dropped; coco128 has no ignore boxes",
               "ms/person = runtime call wall time / people posed; machine shared, timings noisy"],
        rows=rows)
    from evopose_sdk.atomic import atomic_write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(payload, indent=2) + "\n")
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
