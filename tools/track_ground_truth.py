#!/usr/bin/env python3
"""Make and check the hand-checked track ground truth of ``benchmarks/track_ids.py``.

Steps (each a subcommand; work files go to ``--work``, default /tmp/evopose-track-gt):

1. ``detect VIDEO N``: YOLOX-nano with the mirror view at score 0.15 on each of the first N
   frames (a stronger, slower setting than any runtime default), boxes to ``VIDEO.dets.json``;
2. ``link VIDEO``: those boxes joined into tracklets by IoU >= 0.3 (gaps up to 15 frames),
   printed with their frame ranges (``VIDEO.tracklets.json``);
3. ``build VIDEO SPEC``: the ground truth from a spec written by hand after looking at the
   frames: per person an ``id``, a ``note``, the ``frames`` [first, last] they are in view,
   the ``tracklets`` that are them, and optional ``boxes`` {frame: [x1, y1, x2, y2]} set by
   hand. Each frame in view gets the best-scoring box of the person's tracklets there, else
   the hand box, else the linear interpolation of the nearest boxes before and after (the
   nearest one at the ends);
4. ``sheet VIDEO FIRST LAST STEP [--gt FILE]``: a PNG contact sheet of every STEP-th frame with
   the tracklets (or the ground truth) drawn, to check by eye.

The spec and the ground truth live in ``benchmarks/data/`` (``track_gt_<video>.spec.json``,
``track_gt_<video>.json``).

    python tools/track_ground_truth.py detect demo.mp4 230
    python tools/track_ground_truth.py link demo.mp4
    python tools/track_ground_truth.py build demo.mp4 benchmarks/data/track_gt_demo.spec.json
    python tools/track_ground_truth.py sheet demo.mp4 0 229 8 --gt benchmarks/data/track_gt_demo.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.training.evaluate_tracks import in_ignore

REPO = Path(__file__).resolve().parents[1]

COLOURS = [(0, 0, 255), (0, 200, 0), (255, 0, 0), (0, 200, 255), (255, 0, 255), (255, 255, 0),
           (0, 128, 255), (128, 0, 255), (255, 128, 0), (0, 0, 128), (0, 128, 0), (128, 0, 0)]


def frames_of(video: Path, last: int):
    cap = cv2.VideoCapture(str(video))
    for i in range(last + 1):
        ok, frame = cap.read()
        if not ok:
            break
        yield i, frame
    cap.release()


def detect(video: Path, n: int, work: Path) -> None:
    from evopose_sdk.detectors import YOLOXOnnxDetector

    det = YOLOXOnnxDetector(score_threshold=0.15, nms_iou=0.6)
    out = []
    for _, frame in frames_of(video, n - 1):
        b, s = det.detect(frame, flip=True)
        out.append([[*map(float, bb), float(ss)] for bb, ss in zip(b, s, strict=True)])
    (work / f"{video.name}.dets.json").write_text(json.dumps(out))
    print(f"{video.name}: {len(out)} frames, {sum(map(len, out))} boxes")


def link(video: Path, work: Path) -> list[dict]:
    from evopose_sdk.tracking import box_iou

    dets = json.loads((work / f"{video.name}.dets.json").read_text())
    tracks: list[dict] = []
    for f, d in enumerate(dets):
        b = np.array([x[:4] for x in d]).reshape(-1, 4)
        live = [t for t in tracks if f - t["lastf"] <= 15]
        used: set[int] = set()
        if live and len(b):
            iou = box_iou(b, np.array([t["last"] for t in live]))
            for flat in np.argsort(-iou, axis=None):
                r, c = divmod(int(flat), iou.shape[1])
                if iou[r, c] < 0.3:
                    break
                if r in used or live[c]["lastf"] == f:
                    continue
                live[c]["frames"][str(f)] = d[r]
                live[c]["last"], live[c]["lastf"] = b[r], f
                used.add(r)
        for r in range(len(b)):
            if r not in used:
                tracks.append({"id": len(tracks), "frames": {str(f): d[r]}, "last": b[r],
                               "lastf": f})
    out = [{"id": t["id"], "frames": t["frames"]} for t in tracks]
    (work / f"{video.name}.tracklets.json").write_text(json.dumps(out))
    for t in out:
        fr = sorted(map(int, t["frames"]))
        best = max(v[4] for v in t["frames"].values())
        print(t["id"], fr[0], fr[-1], len(fr), round(best, 2),
              [int(v) for v in t["frames"][str(fr[0])][:4]],
              [int(v) for v in t["frames"][str(fr[-1])][:4]])
    return out


def build(video: Path, spec_file: Path, work: Path) -> Path:
    spec = json.loads(spec_file.read_text())
    tracklets = {t["id"]: t for t in json.loads((work / f"{video.name}.tracklets.json").read_text())}
    people = []
    for p in spec["people"]:
        first, last = p["frames"]
        known: dict[int, tuple[float, list[float]]] = {}
        for tid in p.get("tracklets", []):
            for f, box in tracklets[tid]["frames"].items():
                f = int(f)
                if first <= f <= last and (f not in known or box[4] > known[f][0]):
                    known[f] = (box[4], box[:4])
        for f, box in p.get("boxes", {}).items():
            known[int(f)] = (2.0, box)  # a hand box wins over a detection
        keys = sorted(known)
        if not keys:
            raise SystemExit(f"{p['id']}: no box at all")
        boxes, source = {}, {"detected": 0, "hand": 0, "interpolated": 0}
        for f in range(first, last + 1):
            if f in known:
                boxes[str(f)] = [round(float(v), 1) for v in known[f][1]]
                source["hand" if known[f][0] > 1 else "detected"] += 1
                continue
            before = [k for k in keys if k < f]
            after = [k for k in keys if k > f]
            if before and after:
                a, b = before[-1], after[0]
                w = (f - a) / (b - a)
                box = (1 - w) * np.array(known[a][1]) + w * np.array(known[b][1])
            else:
                box = np.array(known[(before or after)[-1 if before else 0]][1])
            boxes[str(f)] = [round(float(v), 1) for v in box]
            source["interpolated"] += 1
        for f in [f for f, b in boxes.items() if in_ignore(spec, int(f), b)]:
            del boxes[f]  # scored nowhere inside an ignore region
        people.append({"id": p["id"], "note": p.get("note", ""), "frames": [first, last],
                       "box_sources": source, "boxes": boxes})
    gt = {"video": video.name, "frames": spec["frames"], "checked": spec.get("checked", ""),
          "made_by": f"tools/track_ground_truth.py build {video.name} {spec_file.name}",
          "ignore": spec.get("ignore", []), "people": people}
    out = spec_file.with_name(spec_file.name.replace(".spec.json", ".json"))
    out.write_text(json.dumps(gt, indent=1) + "\n")
    for p in people:
        print(p["id"], p["frames"], p["box_sources"])
    return out


def sheet(video: Path, first: int, last: int, step: int, gt_file: Path | None, work: Path,
          scale: float, cols: int) -> Path:
    tiles = []
    gt = json.loads(gt_file.read_text()) if gt_file else None
    tracklets = [] if gt else json.loads((work / f"{video.name}.tracklets.json").read_text())
    for i, frame in frames_of(video, last):
        if i < first or (i - first) % step:
            continue
        f = frame.copy()
        marks = ([(p["id"], k, p["boxes"].get(str(i))) for k, p in enumerate(gt["people"])]
                 if gt else [(f"{t['id']}:{t['frames'][str(i)][4]:.2f}", t["id"],
                              t["frames"][str(i)][:4]) for t in tracklets
                             if str(i) in t["frames"]])
        for label, k, box in marks:
            if box is None:
                continue
            c = COLOURS[k % len(COLOURS)]
            x1, y1, x2, y2 = (int(v) for v in box)
            cv2.rectangle(f, (x1, y1), (x2, y2), c, 3)
            cv2.putText(f, str(label), (x1, y1 + 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, c, 2)
        cv2.putText(f, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4)
        tiles.append(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    out_img = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, t in enumerate(tiles):
        out_img[(k // cols) * h:(k // cols + 1) * h, (k % cols) * w:(k % cols + 1) * w] = t
    out = work / f"sheet_{video.stem}_{first}_{last}_{step}{'_gt' if gt else ''}.png"
    cv2.imwrite(str(out), out_img)
    print(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/evopose-track-gt"))
    ap.add_argument("--samples", type=Path, default=REPO / ".samples")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("detect")
    p.add_argument("video")
    p.add_argument("n", type=int)
    p = sub.add_parser("link")
    p.add_argument("video")
    p = sub.add_parser("build")
    p.add_argument("video")
    p.add_argument("spec", type=Path)
    p = sub.add_parser("sheet")
    p.add_argument("video")
    p.add_argument("first", type=int)
    p.add_argument("last", type=int)
    p.add_argument("step", type=int)
    p.add_argument("--gt", type=Path, default=None)
    p.add_argument("--scale", type=float, default=0.3)
    p.add_argument("--cols", type=int, default=3)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    video = args.samples / args.video
    if not video.is_file():
        print(f"error: {video} missing: python tools/fetch_samples.py", file=sys.stderr)
        return 2
    if args.cmd == "detect":
        detect(video, args.n, args.work)
    elif args.cmd == "link":
        link(video, args.work)
    elif args.cmd == "build":
        build(video, args.spec, args.work)
    else:
        sheet(video, args.first, args.last, args.step, args.gt, args.work, args.scale, args.cols)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
