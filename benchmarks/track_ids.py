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
the "before" row. Each run is scored by
:func:`evopose_sdk.training.evaluate_tracks.evaluate_tracks` (output people matched one to one
to ground-truth people by IoU >= ``--iou``, 0.3: the ground-truth boxes are partly
interpolated; people in ignore regions left out):
coverage, id switches, fragments, ids per person, untracked (-1) and false people, and the
detector's misses frame by frame (in the JSON).

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
    # this checkout's package (the --record subprocess may run another checkout's)
    from evopose_sdk.training.evaluate_tracks import evaluate_tracks

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
                                 **evaluate_tracks(rec, gt, args.iou)))
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
