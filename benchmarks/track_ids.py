"""Track ids on the sample videos against a hand-checked ground truth: id switches,
fragments, untracked (-1) people, and the detector's misses frame by frame.

The ground truth (``benchmarks/data/track_gt_<video>.json``, made with
``tools/track_ground_truth.py`` and checked by eye frame by frame on contact sheets) lists
each real person of the first frames of ``.samples/demo.mp4`` and ``.samples/vtest.avi``
with a box on every frame where they are in view (boxes from a strong offline detector run,
interpolated through its gaps; identities and presence set by hand).

Each variant runs the video as ``evopose-infer`` does by default (``PoseEstimator().stream``:
the detector on every third frame, crops that follow the keypoints in between, tracking and
smoothing, no flip test) in a fresh process; ``--root`` runs another checkout's
``evopose_sdk`` (e.g. ``git archive HEAD`` before a change) with this checkout's models, for
the "before" row. Per frame, output people are matched one to one to ground-truth people by
IoU >= ``--iou`` (0.3: the ground-truth boxes are partly interpolated), then per video:

Output people whose box centre lies in an ignore region of the ground truth are left out.

* ``matched`` / ``gt``: ground-truth person-frames with an output person (any id);
* ``untracked``: output people with id -1; ``false``: output people matching no one;
* ``id_switches``: a ground-truth person matched to another id than at its previous matched
  frame (CLEAR-MOT IDSW; id -1 counts as an id); ``fragments``: a ground-truth person's
  coverage broken (matched, then unmatched, then matched again);
* ``ids_per_person``: distinct ids a person got (1 is ideal);
* ``detector_misses``: per frame the detector ran on, the ground-truth people no detector
  box covers (IoU >= ``--iou``), listed frame by frame in the JSON.

    git archive HEAD evopose_sdk | tar -x -C /tmp/evopose-before   # the code before a change
    python benchmarks/track_ids.py --before-root /tmp/evopose-before --tag issue23

Prints a table and writes ``benchmarks/results/track_ids_<tag>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GT_DIR = REPO / "benchmarks" / "data"
VIDEOS = ("demo.mp4", "vtest.avi")
log = logging.getLogger("track_ids")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (n, m) of xyxy boxes (the SDK's, imported here so ``--root`` runs stay pure)."""
    from evopose_sdk.tracking import box_iou as iou

    return iou(a, b)


def record(video: Path, frames: int, detector: str | None, out: Path) -> None:
    """Run the default video mode over ``frames`` frames of ``video``; write per frame the
    output boxes, ids and the detector's own boxes (frames it ran on) as JSON."""
    from evopose_sdk import PoseEstimator

    kw: dict[str, Any] = {} if detector is None else {"detector": detector}
    rows = []
    with PoseEstimator(**kw) as est:
        seen: list[list] = []
        detect = est.detect

        def spy(image_bgr: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
            boxes, scores = detect(image_bgr, **kwargs)  # the stream's own detector call
            seen.append(np.asarray(boxes).round(1).tolist())
            return boxes, scores

        est.detect = spy  # type: ignore[method-assign]
        t0 = time.perf_counter()
        for frame_i, (_, people) in enumerate(est.stream(str(video), max_frames=frames,
                                                         pipeline=False)):
            rows.append({"frame": frame_i, "boxes": people.boxes_xyxy.round(1).tolist(),
                         "ids": people.track_ids.tolist(),
                         "detector_boxes": seen.pop() if seen else None})
        wall = time.perf_counter() - t0
    out.write_text(json.dumps({"video": video.name, "frames": len(rows), "wall_s": wall,
                               "detector": type(est.detector).__name__, "rows": rows}))


def in_ignore(gt: dict, frame: int, box: Any) -> bool:
    """Whether ``box``'s centre lies in one of ``gt``'s ignore regions at ``frame``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(r["frames"][0] <= frame <= r["frames"][1] and r["box"][0] <= cx <= r["box"][2]
               and r["box"][1] <= cy <= r["box"][3] for r in gt.get("ignore", []))


def evaluate(rec: dict, gt: dict, iou_min: float) -> dict:
    """The metrics of the module docstring for one recorded run against its ground truth."""
    people = gt["people"]
    last_id: dict[str, int] = {}
    state: dict[str, str] = {}  # "matched" | "gap" (after a match) | "none"
    ids: dict[str, set] = {p["id"]: set() for p in people}
    totals = dict(gt=0, matched=0, outputs=0, untracked=0, false=0, id_switches=0, fragments=0)
    misses: list[dict] = []
    for row in rec["rows"][: gt["frames"]]:
        f = str(row["frame"])
        present = [p for p in people if f in p["boxes"]]
        g = np.array([p["boxes"][f] for p in present], np.float64).reshape(-1, 4)
        o = np.array(row["boxes"], np.float64).reshape(-1, 4)
        out_ids = row["ids"]
        scored = [j for j, b in enumerate(o) if not in_ignore(gt, row["frame"], b)]
        o, out_ids = o[scored].reshape(-1, 4), [out_ids[j] for j in scored]
        totals["gt"] += len(present)
        totals["outputs"] += len(o)
        totals["untracked"] += sum(1 for t in out_ids if t < 0)
        pairs = _match(g, o, iou_min)
        got = {i: j for i, j in pairs}
        totals["matched"] += len(pairs)
        totals["false"] += len(o) - len(pairs)
        for i, p in enumerate(present):
            pid = p["id"]
            if i in got:
                t = int(out_ids[got[i]])
                ids[pid].add(t)
                if pid in last_id and last_id[pid] != t:
                    totals["id_switches"] += 1
                if state.get(pid) == "gap":
                    totals["fragments"] += 1
                last_id[pid], state[pid] = t, "matched"
            elif state.get(pid) == "matched":
                state[pid] = "gap"
        if row.get("detector_boxes") is not None:
            d = np.array(row["detector_boxes"], np.float64).reshape(-1, 4)
            covered = {i for i, _ in _match(g, d, iou_min)}
            missed = [p["id"] for i, p in enumerate(present) if i not in covered]
            if missed:
                misses.append({"frame": row["frame"], "missed": missed})
    detector_frames = sum(1 for r in rec["rows"][: gt["frames"]] if r.get("detector_boxes")
                          is not None)
    return dict(totals, frames=min(len(rec["rows"]), gt["frames"]),
                coverage=totals["matched"] / max(totals["gt"], 1),
                distinct_ids=len({t for r in rec["rows"][: gt["frames"]] for t in r["ids"]}),
                ids_per_person={k: sorted(v) for k, v in ids.items()},
                detector_frames=detector_frames,
                detector_missed_person_frames=sum(len(m["missed"]) for m in misses),
                detector_misses=misses, wall_s=rec.get("wall_s"))


def _match(g: np.ndarray, o: np.ndarray, iou_min: float) -> list[tuple[int, int]]:
    """One-to-one pairs (gt index, output index) of highest total IoU, each >= ``iou_min``."""
    from evopose_sdk.tracking import assign_by_iou

    return assign_by_iou(box_iou(g, o), iou_min) if len(g) and len(o) else []


def table(rows: list[dict]) -> str:
    head = ("| video | variant | frames | coverage | id switches | fragments | ids (people) | "
            "untracked (-1) | false | detector misses (person-frames / detector frames) | s |")
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['video']} | {r['variant']} ({r['detector']}) | {r['frames']} | "
                     f"{r['coverage']:.3f} | "
                     f"{r['id_switches']} | {r['fragments']} | {r['distinct_ids']} "
                     f"({len(r['ids_per_person'])}) | {r['untracked']} | {r['false']} | "
                     f"{r['detector_missed_person_frames']} / {r['detector_frames']} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, default=REPO / ".samples")
    ap.add_argument("--before-root", type=Path, default=None,
                    help="a checkout (git archive) whose evopose_sdk gives the 'before' row")
    ap.add_argument("--variants", nargs="+", default=["default", "yolox"],
                    help="detectors for this checkout's rows ('default', 'yolox', ...)")
    ap.add_argument("--iou", type=float, default=0.3)
    ap.add_argument("--tag", default=f"{dt.date.today():%Y%m%d}")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--record", nargs=4, metavar=("VIDEO", "FRAMES", "DETECTOR", "OUT"),
                    help=argparse.SUPPRESS)  # one run, in the subprocess
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.record:
        video, frames, detector, out = args.record
        record(Path(video), int(frames), None if detector == "-" else detector, Path(out))
        return 0
    runs = [("before: --before-root, its default detector", args.before_root, "-")
            ] if args.before_root else []
    runs += [(f"this checkout, detector {v}", None, "-" if v == "default" else v)
             for v in args.variants]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for video in VIDEOS:
            gt = json.loads((GT_DIR / f"track_gt_{Path(video).stem}.json").read_text())
            for label, root, detector in runs:
                out = Path(tmp) / "rec.json"
                env = dict(os.environ, EVOPOSE_MODELS_DIR=str(REPO / "models"))
                if root is not None:
                    env["PYTHONPATH"] = str(root)
                cmd = [sys.executable, __file__, "--record", str(args.samples / video),
                       str(gt["frames"]), detector, str(out)]
                log.info("%s: %s", video, label)
                subprocess.run(cmd, env=env, check=True, cwd=tempfile.gettempdir())
                rec = json.loads(out.read_text())
                rows.append(dict(video=video, variant=label, detector=rec["detector"],
                                 **evaluate(rec, gt, args.iou)))
    print(table(rows))
    path = args.out or REPO / "benchmarks" / "results" / f"track_ids_{args.tag}.json"
    payload = {"created": dt.datetime.now().isoformat(timespec="seconds"), "iou": args.iou,
               "mode": "PoseEstimator().stream defaults (detect every 3rd frame, no flip, "
                       "tracking, smoothing), pipeline off", "rows": rows}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
