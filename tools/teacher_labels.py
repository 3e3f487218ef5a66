"""Per-joint teacher/label agreement and teacher-corrected label variants.

    python tools/teacher_labels.py --data ../shared/data --teacher-dir runs/teacher \
        --out runs/teacher_labels --table benchmarks/results/teacher_agreement.json

Reads the flip-averaged MoveNet Thunder keypoints of ``tools/teacher_pass.py`` and the human
labels, and writes:

* the agreement table (JSON + a Markdown table on stdout): per source and joint, labelled
  joints, the median label-teacher distance in units of sqrt(area), the share within
  per-keypoint OKS 0.5, and the median offset along the body axis (shoulders -> hips; + is
  towards the feet), in the same units;
* label variants, each a folder of COCO files (``<out>/<variant>/<source>/annotations.json``,
  images stay in the data folder):

  - ``faces``: nose/eyes/ears added to LSP/LSPET/PARSE people where the teacher's score is
    >= 0.3 and the point lies within one head length of the labelled head (neck-head top);
  - ``faces_hips``: also the hips of each LSP-family source moved along the body axis by the
    difference between that source's median offset and the COCO-convention sources' median
    (LiteHRNet, julito, coco128), where it is at least ``MIN_HIP_SHIFT``, so their hips
    follow COCO's convention;
  - ``faces_hips_gated``: also LSPET limb joints replaced by the teacher's where the teacher
    is confident (score >= 0.5) and agrees (per-keypoint OKS >= 0.5: the same joint, placed
    with less crowd-sourcing noise); joints where they disagree keep the human label.

Human labels of the COCO-convention sources are never changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.skeleton import COCO_KEYPOINT_NAMES, COCO_SIGMAS
from evopose_sdk.training.pseudo_labeller import head_gate

log = logging.getLogger("teacher_labels")

FACE = (0, 1, 2, 3, 4)
LIMBS = tuple(range(5, 17))
HIPS = (11, 12)
LSP_FAMILY = ("lsp", "lspet", "parse")
COCO_CONVENTION = ("litehrnet", "julito", "coco128")
FACE_MIN_SCORE = 0.3
GATE_MIN_SCORE = 0.5
GATE_MIN_OKS = 0.5
#: hips are moved only when their median offset differs from the COCO-convention sources'
#: by at least this much (sqrt(area) units)
MIN_HIP_SHIFT = 0.015


def load(data: Path, teacher_dir: Path, source: str) -> tuple[dict, list[dict], np.ndarray]:
    """(coco dict, its train annotations, teacher (n, 17, 3) in the same order)."""
    coco = json.loads((data / source / "annotations.json").read_text(encoding="utf-8"))
    z = np.load(teacher_dir / f"{source}.npz")
    by_id = dict(zip(z["ann_ids"].tolist(), z["teacher"], strict=True))
    split = {im["id"]: im.get("split") for im in coco["images"]}
    anns = [a for a in coco["annotations"] if split[a["image_id"]] == "train"]
    missing = sum(a["id"] not in by_id for a in anns)
    if missing:
        log.warning("%s: %d of %d people have no teacher keypoints (partial teacher pass); "
                    "their labels stay as they are", source, missing, len(anns))
    nan = np.full((17, 3), np.nan)
    return coco, anns, np.stack([by_id.get(a["id"], nan) for a in anns]).astype(np.float64)


def geometry(anns: list[dict], teacher: np.ndarray):
    """labels (n, 17, 3), scale sqrt(area) (n,), body axis unit vectors (n, 2) from the
    teacher's shoulders to its hips."""
    labels = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
    scale = np.sqrt(np.maximum([a["area"] for a in anns], 1.0))
    axis = teacher[:, HIPS, :2].mean(1) - teacher[:, (5, 6), :2].mean(1)
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-6)
    return labels, scale, axis


def agreement(labels, teacher, scale, axis) -> dict:
    """Per joint: n, median distance / scale, share with keypoint OKS >= 0.5, median offset
    along the body axis / scale (label minus teacher)."""
    out = {}
    for k in range(17):
        v = (labels[:, k, 2] > 0) & np.isfinite(teacher[:, k, 0])
        if not v.any():
            continue
        d = labels[v, k, :2] - teacher[v, k, :2]
        dist = np.linalg.norm(d, axis=1) / scale[v]
        ks = np.exp(-dist ** 2 / (2 * (2 * COCO_SIGMAS[k]) ** 2))
        along = (d * axis[v]).sum(1) / scale[v]
        out[COCO_KEYPOINT_NAMES[k]] = {
            "n": int(v.sum()), "median_dist": round(float(np.median(dist)), 4),
            "within_oks_0.5": round(float((ks >= 0.5).mean()), 4),
            "median_along_axis": round(float(np.median(along)), 4)}
    return out


def add_faces(ann: dict, kps: np.ndarray, t: np.ndarray, wh: tuple[int, int]) -> int:
    """Teacher face points into ``kps`` (17, 3) in place where gated; returns the count."""
    if (kps[list(FACE), 2] > 0).any():
        return 0
    gate = head_gate(ann)
    if gate is None:
        return 0
    centre, length = gate
    added = 0
    for k in FACE:
        x, y, s = t[k]
        if s >= FACE_MIN_SCORE and np.hypot(x - centre[0], y - centre[1]) <= length:
            kps[k] = (min(max(x, 0.0), wh[0] - 1.0), min(max(y, 0.0), wh[1] - 1.0), 2)
            added += 1
    return added


def variants(data: Path, teacher_dir: Path, out: Path,
             hip_shift: dict[str, dict[int, float]]) -> dict:
    """Write the three label variants; returns counts per variant and source."""
    counts: dict = {}
    for variant in ("faces", "faces_hips", "faces_hips_gated"):
        counts[variant] = {}
        for source in LSP_FAMILY:
            coco, anns, teacher = load(data, teacher_dir, source)
            labels, scale, axis = geometry(anns, teacher)
            sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
            c = {"faces": 0, "hips_moved": 0, "joints_from_teacher": 0}
            for i, a in enumerate(anns):
                if not np.isfinite(teacher[i]).all():
                    continue
                kps = labels[i].copy()
                wh = sizes[a["image_id"]]
                c["faces"] += add_faces(a, kps, teacher[i], wh)
                if variant != "faces":
                    for k, shift in hip_shift[source].items():
                        if kps[k, 2] > 0:
                            kps[k, :2] -= shift * scale[i] * axis[i]
                            kps[k, 0] = min(max(kps[k, 0], 0.0), wh[0] - 1.0)
                            kps[k, 1] = min(max(kps[k, 1], 0.0), wh[1] - 1.0)
                            c["hips_moved"] += 1
                if variant == "faces_hips_gated" and source == "lspet":
                    for k in LIMBS:
                        if kps[k, 2] <= 0 or teacher[i, k, 2] < GATE_MIN_SCORE:
                            continue
                        d = np.linalg.norm(labels[i, k, :2] - teacher[i, k, :2]) / scale[i]
                        if np.exp(-d ** 2 / (2 * (2 * COCO_SIGMAS[k]) ** 2)) >= GATE_MIN_OKS:
                            kps[k, :2] = teacher[i, k, :2]
                            c["joints_from_teacher"] += 1
                a["keypoints"] = [round(float(v), 2) for v in kps.reshape(-1)]
                a["num_keypoints"] = int((kps[:, 2] > 0).sum())
            info = dict(coco.get("info") or {})
            info["teacher_labels"] = {"variant": variant, "teacher": "MoveNet Thunder "
                                      "(Apache-2.0), flip-averaged", "hip_shift": {
                                      COCO_KEYPOINT_NAMES[k]: v
                                      for k, v in hip_shift[source].items()},
                                      **c}
            coco["info"] = info
            dest = out / variant / source / "annotations.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dest, json.dumps(coco))
            counts[variant][source] = c
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--table", type=Path, help="write the agreement table JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = {}
    for source in LSP_FAMILY + COCO_CONVENTION:
        if not (args.teacher_dir / f"{source}.npz").is_file():
            log.error("no teacher keypoints for %s in %s", source, args.teacher_dir)
            return 2
        _, anns, teacher = load(args.data, args.teacher_dir, source)
        labels, scale, axis = geometry(anns, teacher)
        table[source] = agreement(labels, teacher, scale, axis)
    ref = {k: float(np.median([table[s][COCO_KEYPOINT_NAMES[k]]["median_along_axis"]
                               for s in COCO_CONVENTION if COCO_KEYPOINT_NAMES[k] in table[s]]))
           for k in HIPS}
    hip_shift = {}
    for s in LSP_FAMILY:
        shift = {k: round(table[s][COCO_KEYPOINT_NAMES[k]]["median_along_axis"] - ref[k], 4)
                 for k in HIPS}
        # only a clear convention difference is corrected; noise is left alone
        hip_shift[s] = {k: v for k, v in shift.items() if abs(v) >= MIN_HIP_SHIFT}
    counts = variants(args.data, args.teacher_dir, args.out, hip_shift)
    report = {"teacher": "MoveNet Thunder (TF.js -> TFLite, Apache-2.0), plain + mirrored "
                         "pass averaged, 1.25x square crop of the labelled box",
              "units": "distances and offsets in sqrt(annotation area); offset = label - "
                       "teacher along the teacher's shoulders->hips axis (+ = towards feet)",
              "agreement": table, "hip_shift": {s: {COCO_KEYPOINT_NAMES[k]: v for k, v in sh.items()}
                            for s, sh in hip_shift.items()},
              "hip_reference": {COCO_KEYPOINT_NAMES[k]: v for k, v in ref.items()},
              "variants": counts}
    if args.table:
        atomic_write_text(args.table, json.dumps(report, indent=1) + "\n")
    joints = list(COCO_KEYPOINT_NAMES[5:])
    print("| source | " + " | ".join(joints) + " |")
    print("|---|" + "---:|" * len(joints))
    for s, rows in table.items():
        cells = [f"{rows[j]['median_dist']:.3f} / {100 * rows[j]['within_oks_0.5']:.0f}% / "
                 f"{rows[j]['median_along_axis']:+.3f}" if j in rows else "-" for j in joints]
        print(f"| {s} | " + " | ".join(cells) + " |")
    print(f"hip shifts (sqrt(area) along the body axis): {report['hip_shift']}")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
