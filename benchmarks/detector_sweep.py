"""Person detectors on dev_val: recall and false boxes against score threshold and NMS IoU,
the operating point each gets, and dev_val AP with its boxes.

Runs each detector once per ``dev_val`` image (110 images, 300 labelled people; see
:mod:`evopose_sdk.training.evaluate_runtime`) with a low threshold and no NMS, and scores every (NMS IoU, threshold)
pair from the same boxes (greedy NMS then a threshold keeps the same boxes as the threshold
then NMS, which is what the detectors do):

* recall: labelled people (``num_keypoints > 0``) matched by a detection with IoU >= 0.5
  (greedy, highest score first, one detection per person);
* false positives per image: detections matching no labelled person, not dropped by the
  images' ignore regions (crowds and people without keypoints). Two protocols: ``rows``, as
  every earlier figure (coco128 has no ignore regions, so its 53 people without keypoints count
  as false positives: an upper bound), and ``rows_coco128_ignore``, with those people's boxes
  from coco128's COCO detection labels as ignore regions
  (``benchmarks/data/coco128_dev_val_ignore_boxes.json``, ``tools/coco128_ignore_boxes.py``);
* precision = matched / (matched + FP);
* ms per image: the detector's own call (1 thread), median over the images, on whatever the
  machine is doing.

The operating point of a detector (``--choose``): the (NMS IoU, threshold) of highest recall
whose false positives per image are at most those of the SSD detector at its shipped 0.3 / 0.6
(the default detector before YOLOX-nano was measured) under both protocols (``--protocol`` for one), ties to the higher
threshold. Chosen on dev_val only. With
``--ap MODEL``, each detector's shipped point (and its chosen one) is also scored as COCO
keypoint AP with ``MODEL`` on its boxes (flip test on, as the detector rows of
``evaluate_runtime.run_ours``),
under both protocols.

    python benchmarks/detector_sweep.py --detectors ssd yolox yolox:noflip --choose \\
        --ap models/evopose2d-s.onnx --tag issue23
    python benchmarks/detector_sweep.py --detectors ssd yolox:noflip yolox \\
        --time .samples/vtest.avi --update benchmarks/results/detector_sweep_issue23.json
    python benchmarks/detector_sweep.py --detectors ssd yolox:noflip yolox \\
        --misses .samples --update benchmarks/results/detector_sweep_issue23.json

Prints tables and writes ``benchmarks/results/detector_sweep_<tag>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.detectors import make_detector, nms_boxes
from evopose_sdk.tracking import box_iou
from evopose_sdk.training.evaluate_runtime import (
    ignored_detections,
    load_dev_val,
    run_ours,
    xywh_to_xyxy,
)
from evopose_sdk.training.evaluate_tracks import evaluate_tracks

REPO = Path(__file__).resolve().parents[1]
#: COCO people without keypoint labels in the coco128 dev_val images (tools/coco128_ignore_boxes.py)
COCO128_IGNORE = REPO / "benchmarks" / "data" / "coco128_dev_val_ignore_boxes.json"
#: the track ground truths of the sample videos (``benchmarks/track_ids.py``)
TRACK_GT = sorted(set((REPO / "benchmarks" / "data").glob("track_gt_*.json"))
                  - set((REPO / "benchmarks" / "data").glob("*.spec.json")))
THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.275, 0.3, 0.325, 0.35, 0.4, 0.45, 0.5, 0.6)
NMS_IOUS = (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
#: SSD-MobileNetV2 at its shipped threshold and NMS: the reference for false boxes per image
REFERENCE = ("ssd", 0.3, 0.6)
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


def build(spec: str, **kw: Any) -> Any:
    """:func:`make_detector` for ``spec``; ``NAME:noflip`` builds NAME with its ``flip`` off
    (YOLOX's one-view mode)."""
    name, _, option = spec.partition(":")
    det = make_detector(name, **kw)
    if option == "noflip":
        det.flip = False
    elif option:
        raise SystemExit(f"error: unknown detector option {option!r} in {spec!r}")
    return det


def raw_detections(gt: dict, detector: str, low: float) -> tuple[list[tuple], float]:
    """Per image (boxes, scores, GT xyxy, image id) of ``detector`` at threshold ``low`` with
    NMS off and no cap; and the median ms per image of its ``detect`` call."""
    from tqdm import tqdm

    det = build(detector, score_threshold=low, nms_iou=1.0, threads=1)
    if hasattr(det, "max_detections"):
        det.max_detections = None
    people: dict[int, list] = {}
    for a in gt["annotations"]:
        if a["num_keypoints"] > 0 and not a["iscrowd"]:
            people.setdefault(a["image_id"], []).append(a["bbox"])
    per_image, ms = [], []
    det.detect(cv2.imread(gt["images"][0]["path"]))  # warm-up, not timed
    for im in tqdm(gt["images"], desc=f"detect {detector}", file=sys.stderr, leave=False):
        image = cv2.imread(im["path"])
        t0 = time.perf_counter()
        boxes, scores = det.detect(image)
        ms.append((time.perf_counter() - t0) * 1e3)
        g = xywh_to_xyxy(people[im["id"]]) if im["id"] in people else np.zeros((0, 4))
        per_image.append((boxes, scores, g, im["id"]))
    return per_image, float(np.median(ms))


def score_point(per_image: list[tuple], threshold: float, nms_iou: float,
                ignore: dict[int, list]) -> dict[str, Any]:
    """Recall, false positives per image and precision at one (threshold, NMS IoU), with
    ``ignore`` (image id -> ignore boxes xywh) as the ignore regions."""
    tp = fp = n_people = 0
    for boxes, scores, g, image_id in per_image:
        keep = nms_boxes(boxes, scores, threshold, nms_iou)
        b, s = boxes[keep], scores[keep]
        hit = match(b, s, g)
        dropped = ignored_detections(b, ignore.get(image_id, []), g) & ~hit
        tp += int(hit.sum())
        fp += int((~hit & ~dropped).sum())
        n_people += len(g)
    return {"threshold": threshold, "nms_iou": nms_iou, "recall": tp / max(n_people, 1),
            "matched": tp, "false_positives": fp, "fp_per_image": fp / len(per_image),
            "precision": tp / max(tp + fp, 1)}


PROTOCOLS = ("standard", "coco128_ignore")


def ignore_maps(gt: dict, gt_full: dict) -> dict[str, dict[int, list]]:
    """Image id -> ignore boxes under each of :data:`PROTOCOLS`."""
    return {"standard": {im["id"]: im["ignore_boxes"] for im in gt["images"]},
            "coco128_ignore": {im["id"]: im["ignore_boxes"] for im in gt_full["images"]}}


def sweep(gt: dict, ignore: dict[str, dict[int, list]], detector: str,
          thresholds=THRESHOLDS, nms_ious=NMS_IOUS) -> dict:
    """Recall / FP per image / precision of ``detector`` at each (NMS IoU, threshold), under
    both protocols (``rows``: standard; ``rows_coco128_ignore``), and at its own defaults."""
    per_image, ms = raw_detections(gt, detector, min(thresholds))
    det = build(detector)
    res = {"detector": detector, "class": type(det).__name__,
           "file": Path(getattr(det, "path", "")).name, "images": len(per_image),
           "people": sum(len(p[2]) for p in per_image), "ms_per_image_median": ms}
    for proto in PROTOCOLS:
        key = "" if proto == "standard" else f"_{proto}"
        res[f"shipped{key}"] = score_point(per_image, det.score_threshold, det.nms_iou,
                                           ignore[proto])
        res[f"rows{key}"] = [score_point(per_image, t, n, ignore[proto])
                             for n in nms_ious for t in thresholds]
    return res


def choose(res: dict, max_fp: dict[str, float]) -> dict | None:
    """The (threshold, NMS) of highest recall whose false positives per image are at most
    ``max_fp[protocol]`` under every protocol given (ties: higher threshold); its standard row
    with ``fp_per_image_<protocol>`` added."""
    rows = []
    for i, row in enumerate(res["rows"]):
        fps = {p: res["rows" if p == "standard" else f"rows_{p}"][i]["fp_per_image"]
               for p in max_fp}
        if all(fps[p] <= max_fp[p] + 1e-12 for p in max_fp):
            rows.append(dict(row, **{f"fp_per_image_{p}": v for p, v in fps.items()}))
    if not rows:
        return None
    return max(rows, key=lambda r: (r["recall"], r["threshold"], -r["fp_per_image"]))


def reference_fp(results: list[dict], gt: dict, ignore: dict[int, list],
                 protocol: str) -> float:
    """False positives per image of :data:`REFERENCE` (SSD at its shipped 0.3 / NMS 0.6) under
    ``protocol``: from its sweep in ``results`` when there, else measured."""
    name, t, n = REFERENCE
    key = "shipped" if protocol == "standard" else f"shipped_{protocol}"
    for res in results:
        s = res[key]
        if res["detector"] == name and (s["threshold"], s["nms_iou"]) == (t, n):
            return float(s["fp_per_image"])
    return float(score_point(raw_detections(gt, name, t)[0], t, n, ignore)["fp_per_image"])


def timing(video: Path, detectors: list[str], frames: int = 30, rounds: int = 6) -> dict:
    """ms per frame of each detector (1 thread) on the first ``frames`` frames of ``video``,
    the detectors interleaved frame by frame (a busy machine's load falls on all alike):
    median, 25th percentile and the median of the per-frame ratio to the first detector."""
    cap = cv2.VideoCapture(str(video))
    clip = [f for ok, f in (cap.read() for _ in range(frames)) if ok]
    cap.release()
    dets = {d: build(d, threads=1) for d in detectors}
    for det in dets.values():
        det.detect(clip[0])  # warm-up
    ms: dict[str, list[float]] = {d: [] for d in dets}
    for _ in range(rounds):
        for f in clip:
            for name, det in dets.items():
                t0 = time.perf_counter()
                det.detect(f)
                ms[name].append((time.perf_counter() - t0) * 1e3)
    ref = np.array(ms[detectors[0]])
    return {"video": video.name, "frames": len(clip), "rounds": rounds, "reference": detectors[0],
            "rows": {d: {"median_ms": float(np.median(v)), "p25_ms": float(np.percentile(v, 25)),
                         "ratio_to_reference": float(np.median(np.array(v) / ref))}
                     for d, v in ms.items()}}


def video_misses(samples: Path, detectors: list[str]) -> list[dict]:
    """Each detector at its defaults on every frame of the sample videos that have a track
    ground truth (``benchmarks/track_ids.py``): the people it misses, frame by frame (IoU
    < 0.3 with every box), and its boxes on no one (ignore regions left out)."""
    rows = []
    for gt_file in TRACK_GT:
        gt = json.loads(gt_file.read_text())
        video = gt["video"]
        cap = cv2.VideoCapture(str(samples / video))
        frames = [f for ok, f in (cap.read() for _ in range(gt["frames"])) if ok]
        cap.release()
        for name in detectors:
            det = build(name, threads=1)
            rec = {"rows": []}
            for i, frame in enumerate(frames):
                boxes = np.asarray(det.detect(frame)[0]).round(1).tolist()
                rec["rows"].append({"frame": i, "boxes": boxes, "ids": [-1] * len(boxes),
                                    "detector_boxes": boxes})
            ev = evaluate_tracks(rec, gt, 0.3)
            rows.append({"video": video, "detector": name, "frames": ev["frames"],
                         "person_frames": ev["gt"],
                         "missed_person_frames": ev["detector_missed_person_frames"],
                         "false_boxes": ev["false"], "misses": ev["detector_misses"]})
            log.info("%s %s: missed %d of %d person-frames, %d boxes on no one", video, name,
                     ev["detector_missed_person_frames"], ev["gt"], ev["false"])
    return rows


def table(res: dict) -> str:
    """Rows of both protocols side by side (FP/img and precision: standard | coco128_ignore)."""
    lines = [f"{res['detector']} ({res['class']}, {res['file']}) on dev_val: {res['images']} "
             f"images, {res['people']} people, {res['ms_per_image_median']:.1f} ms/image",
             f"{'nms':>5} {'threshold':>9} {'recall':>7} {'FP/img':>7} {'precision':>9} | "
             f"{'FP/img':>7} {'precision':>9}  (standard | coco128 ignore boxes)"]
    rows = zip(res["rows"] + [dict(res["shipped"], shipped=True)],
               res["rows_coco128_ignore"] + [res["shipped_coco128_ignore"]], strict=True)
    for r, f in rows:
        lines.append(f"{r['nms_iou']:>5.2f} {r['threshold']:>9.2f} {r['recall']:>7.3f} "
                     f"{r['fp_per_image']:>7.2f} {r['precision']:>9.3f} | "
                     f"{f['fp_per_image']:>7.2f} {f['precision']:>9.3f}"
                     + ("   <- shipped defaults" if r.get("shipped") else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--detectors", nargs="+", default=["default"],
                    help="detector specs (make_detector names or .onnx files; NAME:noflip for "
                         "YOLOX's one view)")
    ap.add_argument("--nms", nargs="+", type=float, default=list(NMS_IOUS))
    ap.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    ap.add_argument("--choose", action="store_true",
                    help="pick each detector's operating point (see the module docstring)")
    ap.add_argument("--protocol", choices=("both", *PROTOCOLS), default="both",
                    help="false positives the operating point is held to")
    ap.add_argument("--ap", type=Path, default=None, metavar="MODEL",
                    help="also dev_val keypoint AP with MODEL on each detector's boxes")
    ap.add_argument("--time", type=Path, default=None, metavar="VIDEO",
                    help="only time the detectors, interleaved, on VIDEO's first frames, and "
                         "add that to --update's JSON (or print it)")
    ap.add_argument("--misses", type=Path, default=None, metavar="SAMPLES",
                    help="only run the detectors on every frame of the sample videos in SAMPLES "
                         "that have a track ground truth, and add their misses frame by frame "
                         "to --update's JSON (or print the counts)")
    ap.add_argument("--update", type=Path, default=None,
                    help="JSON to add --time's or --misses' rows to")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tag", default=f"{socket.gethostname()}_{dt.date.today():%Y%m%d}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("evopose_sdk").setLevel(logging.WARNING)
    if args.time is not None:
        t = timing(args.time, args.detectors)
        for name, row in t["rows"].items():
            print(f"{name:>14}: {row['median_ms']:.1f} ms/frame (p25 {row['p25_ms']:.1f}), "
                  f"{row['ratio_to_reference']:.2f}x {t['reference']}")
        if args.update is not None:
            payload = json.loads(args.update.read_text())
            payload["timing"] = dict(t, created=dt.datetime.now().isoformat(timespec="seconds"))
            atomic_write_text(args.update, json.dumps(payload, indent=2) + "\n")
            log.info("added the timing to %s", args.update)
        return 0
    if args.misses is not None:
        rows = video_misses(args.misses, args.detectors)
        if args.update is not None:
            payload = json.loads(args.update.read_text())
            payload["video_misses"] = rows
            atomic_write_text(args.update, json.dumps(payload, indent=2) + "\n")
            log.info("added the video misses to %s", args.update)
        return 0
    gts = {"standard": load_dev_val(args.data),
           "coco128_ignore": load_dev_val(args.data, extra_ignore=COCO128_IGNORE)}
    ignore = ignore_maps(gts["standard"], gts["coco128_ignore"])
    t_start = time.perf_counter()
    results = [sweep(gts["standard"], ignore, d, tuple(args.thresholds), tuple(args.nms))
               for d in args.detectors]
    for res in results:
        print(table(res), "\n")
    payload: dict[str, Any] = {"created": dt.datetime.now().isoformat(timespec="seconds"),
                               "images": len(gts["standard"]["images"]),
                               "coco128_ignore_boxes": str(COCO128_IGNORE.relative_to(REPO)),
                               "detectors": results}
    if args.choose:
        protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
        max_fp = {p: reference_fp(results, gts["standard"], ignore[p], p) for p in protocols}
        payload.update(protocol=args.protocol, max_fp_per_image=max_fp)
        print("operating points (highest recall at no more false boxes per image than "
              + ", ".join(f"{v:.3f} ({p})" for p, v in max_fp.items()) + "):")
        for res in results:
            res["chosen"] = c = choose(res, max_fp)
            print(f"  {res['detector']}: " + ("none" if c is None else
                  f"threshold {c['threshold']:g}, NMS {c['nms_iou']:g}: recall {c['recall']:.3f}"
                  ", FP/image " + ", ".join(f"{c[f'fp_per_image_{p}']:.3f} ({p})"
                                            for p in protocols)))
    if args.ap is not None:
        ap_rows = []
        for res in [r for r in results if ":" not in r["detector"]]:
            points = [("shipped", res["shipped"])]
            c = res.get("chosen")
            if c and (c["threshold"], c["nms_iou"]) != (res["shipped"]["threshold"],
                                                        res["shipped"]["nms_iou"]):
                points.append(("chosen", c))
            for which, p in points:
                for proto in PROTOCOLS:
                    row = run_ours(args.ap, gts[proto], "detector", True, "dark", True,
                                   det_threshold=p["threshold"], detector=res["detector"],
                                   det_nms=p["nms_iou"])
                    row.update(point=which, protocol=proto)
                    ap_rows.append(row)
                    print(f"  AP {args.ap.name} flip on, {res['detector']} {which} "
                          f"({p['threshold']:g} / NMS {p['nms_iou']:g}), {proto}: "
                          f"{row['AP']:.4f} (AP50 {row['AP50']:.3f}, AR {row['AR']:.3f})")
        payload["ap_rows"] = ap_rows
    payload["seconds"] = round(time.perf_counter() - t_start, 1)
    out = args.out or REPO / "benchmarks" / "results" / f"detector_sweep_{args.tag}.json"
    atomic_write_text(out, json.dumps(payload, indent=2) + "\n")
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
