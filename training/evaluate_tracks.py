"""Track ids of a recorded video run against a hand-checked track ground truth.

The ground truth (``benchmarks/data/track_gt_<video>.json``, made with
``tools/track_ground_truth.py``) has ``frames``, ``people`` (each an ``id`` and ``boxes``:
``{frame: xyxy}`` on every frame where the person is in view) and ``ignore`` regions (``box``
xyxy over ``frames`` [first, last]). Per frame, output people are matched one to one to
ground-truth people by IoU >= ``iou_min``; output people whose box centre lies in an ignore
region are left out. Per run:

* ``matched`` / ``gt``: ground-truth person-frames with an output person (any id);
* ``untracked``: output people with id -1; ``false``: output people matching no one;
* ``id_switches``: a ground-truth person matched to another id than at its previous matched
  frame (CLEAR-MOT IDSW; id -1 counts as an id); ``fragments``: a ground-truth person's
  coverage broken (matched, then unmatched, then matched again);
* ``ids_per_person``: distinct ids a person got (1 is ideal);
* ``detector_misses``: per frame the detector ran on, the ground-truth people no detector
  box covers (IoU >= ``iou_min``).

Used by ``benchmarks/track_ids.py``, ``benchmarks/detector_sweep.py --misses`` and
``tools/track_ground_truth.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evopose_sdk.tracking import assign_by_iou, box_iou


def in_ignore(gt: dict, frame: int, box: Any) -> bool:
    """Whether ``box``'s centre lies in one of ``gt``'s ignore regions at ``frame``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(r["frames"][0] <= frame <= r["frames"][1] and r["box"][0] <= cx <= r["box"][2]
               and r["box"][1] <= cy <= r["box"][3] for r in gt.get("ignore", []))


def evaluate_tracks(rec: dict, gt: dict, iou_min: float) -> dict:
    """The metrics of the module docstring for one recorded run ``rec`` (``rows``: per frame
    ``frame``, output ``boxes`` xyxy, their ``ids``, and ``detector_boxes`` on the frames the
    detector ran, else None; ``wall_s``) against its ground truth ``gt``."""
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
    return assign_by_iou(box_iou(g, o), iou_min) if len(g) and len(o) else []
