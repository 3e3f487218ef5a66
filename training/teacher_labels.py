"""The teacher pass and the teacher-corrected labels of the LSP-family sources.

    python -m evopose_sdk.training.teacher_labels pass --data ../shared/data \\
        --teacher /tmp/peers/models/movenet_thunder.tflite --out runs/teacher
    python -m evopose_sdk.training.teacher_labels labels --data ../shared/data \\
        --teacher-dir runs/teacher --out runs/teacher_labels \\
        --table benchmarks/results/teacher_agreement.json

(``tools/teacher_pass.py`` and ``tools/teacher_labels.py`` run the same two steps.)

1. :func:`teacher_pass`: MoveNet Thunder, flip-averaged, over every train person once; writes
   ``<out>/<source>.npz`` with ``ann_ids`` (n,) and ``teacher`` (n, 17, 3): x, y in image
   pixels and score, the mean of a plain and a mirrored pass on the same 1.25x square crop.
   The pass is the expensive part (~30 ms a person on one core); it is resumable per source.
2. :func:`teacher_labels`: the agreement table (per source and joint: labelled joints, the
   median label-teacher distance in units of sqrt(area), the share within per-keypoint OKS
   0.5, the median offset along the body axis, shoulders -> hips, + towards the feet) and the
   label variants, each a folder of COCO files (``<out>/<variant>/<source>/annotations.json``;
   images stay in the data folder):

   * ``faces``: nose/eyes/ears added to LSP/LSPET/PARSE people where the teacher's score is
     >= 0.3 and the point lies within one head length of the labelled head (neck-head top);
   * ``faces_hips``: also the hips of each LSP-family source moved along the body axis by the
     difference between that source's median offset and the COCO-convention sources' median
     (LiteHRNet, julito, coco128), where it is at least :data:`MIN_HIP_SHIFT`;
   * ``faces_hips_gated``: also LSPET limb joints replaced by the teacher's where the teacher
     is confident (score >= 0.5) and agrees (per-keypoint OKS >= 0.5); joints where they
     disagree keep the human label.

Human labels of the COCO-convention sources are never changed.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
from evopose_sdk.skeleton import COCO_KEYPOINT_NAMES, COCO_SIGMAS
from evopose_sdk.training.pseudo_labeller import (
    FACE,
    MoveNetSinglePose,
    _require_inputs,
    gate_face_points,
    head_gate,
    train_people,
)

log = logging.getLogger(__name__)

LIMBS = tuple(range(5, 17))
HIPS = (11, 12)
LSP_FAMILY = ("lsp", "lspet", "parse")
COCO_CONVENTION = ("litehrnet", "julito", "coco128")
ALL_SOURCES = LSP_FAMILY + COCO_CONVENTION
VARIANTS = ("faces", "faces_hips", "faces_hips_gated")
FACE_MIN_SCORE = 0.3
GATE_MIN_SCORE = 0.5
GATE_MIN_OKS = 0.5
#: hips are moved only when their median offset differs from the COCO-convention sources'
#: by at least this much (sqrt(area) units)
MIN_HIP_SHIFT = 0.015
TEACHER_NOTE = ("MoveNet Thunder (TF.js -> TFLite, Apache-2.0), plain + mirrored pass "
                "averaged, 1.25x square crop of the labelled box")


# --------------------------------------------------------------------------- teacher pass


def teacher_pass_source(src: str | os.PathLike, teacher: MoveNetSinglePose,
                        limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ann_ids (n,) int64, teacher keypoints (n, 17, 3) float32: x, y in image pixels, score)
    for the train people of ``src`` (the first ``limit``), flip-averaged; zeros where the
    image cannot be read."""
    from tqdm import tqdm  # noqa: PLC0415

    src = Path(src)
    _, images, anns = train_people(src, limit)
    ids = np.array([a["id"] for a in anns], np.int64)
    out = np.zeros((len(anns), 17, 3), np.float32)
    last_id, img = None, None
    for i, a in enumerate(tqdm(anns, desc=src.name, mininterval=10)):
        if a["image_id"] != last_id:
            last_id = a["image_id"]
            img = cv2.imread(str(src / "images" / images[last_id]["file_name"]),
                             cv2.IMREAD_COLOR)
        if img is None:
            continue
        out[i] = teacher(img, a["bbox"], flip=True)
    return ids, out


def teacher_pass(data: str | os.PathLike, teacher_path: str | os.PathLike,
                 out: str | os.PathLike, sources: Sequence[str] = ALL_SOURCES,
                 threads: int = 2, limit: int | None = None) -> dict[str, Path]:
    """Write ``<out>/<source>.npz`` (:func:`teacher_pass_source`; also ``teacher_name`` and
    ``flip``) for each source; a file already there is kept (resume) unless ``limit`` is set.
    Returns the files by source.

    Raises:
        FileNotFoundError: no teacher file or a source's ``annotations.json`` is missing
            (checked before the pass starts).
    """
    data, out, teacher_path = Path(data), Path(out), Path(teacher_path)
    _require_inputs(teacher_path, [data / s for s in sources])
    teacher = MoveNetSinglePose(teacher_path, threads)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in sources:
        dest = files[name] = out / f"{name}.npz"
        if dest.is_file() and not limit:
            log.info("%s: done already (%s)", name, dest)
            continue
        ids, kps = teacher_pass_source(data / name, teacher, limit)
        buf = io.BytesIO()
        np.savez(buf, ann_ids=ids, teacher=kps, teacher_name=teacher_path.name, flip=True)
        atomic_write_bytes(dest, buf.getvalue())
        log.info("%s: %d people -> %s", name, len(ids), dest)
    return files


# --------------------------------------------------------------------------- agreement


def load(data: str | os.PathLike, teacher_dir: str | os.PathLike, source: str,
         ) -> tuple[dict, list[dict], np.ndarray]:
    """(COCO dict, its train annotations, teacher (n, 17, 3) float64 in the same order; NaN
    for people the teacher pass did not reach)."""
    coco, _, anns = train_people(Path(data) / source)
    z = np.load(Path(teacher_dir) / f"{source}.npz")
    by_id = dict(zip(z["ann_ids"].tolist(), z["teacher"], strict=True))
    missing = sum(a["id"] not in by_id for a in anns)
    if missing:
        log.warning("%s: %d of %d people have no teacher keypoints (partial teacher pass); "
                    "their labels stay as they are", source, missing, len(anns))
    nan = np.full((17, 3), np.nan)
    return coco, anns, np.stack([by_id.get(a["id"], nan) for a in anns]).astype(np.float64)


def geometry(anns: list[dict], teacher: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (n, 17, 3), scale sqrt(area) (n,) in pixels, body axis unit vectors (n, 2) from
    the teacher's shoulders to its hips."""
    labels = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
    scale = np.sqrt(np.maximum([a["area"] for a in anns], 1.0))
    axis = teacher[:, HIPS, :2].mean(1) - teacher[:, (5, 6), :2].mean(1)
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-6)
    return labels, scale, axis


def _keypoint_oks(dist: np.ndarray | float, k: int) -> np.ndarray | float:
    """Per-keypoint OKS of a distance in sqrt(area) units for COCO joint ``k``."""
    return np.exp(-np.square(dist) / (2 * (2 * COCO_SIGMAS[k]) ** 2))


def agreement(labels: np.ndarray, teacher: np.ndarray, scale: np.ndarray,
              axis: np.ndarray) -> dict[str, dict[str, float]]:
    """Per joint name: n, median distance / scale, share with keypoint OKS >= 0.5, median
    offset along the body axis / scale (label minus teacher). Shapes as :func:`geometry`."""
    out = {}
    for k in range(17):
        v = (labels[:, k, 2] > 0) & np.isfinite(teacher[:, k, 0])
        if not v.any():
            continue
        d = labels[v, k, :2] - teacher[v, k, :2]
        dist = np.linalg.norm(d, axis=1) / scale[v]
        along = (d * axis[v]).sum(1) / scale[v]
        out[COCO_KEYPOINT_NAMES[k]] = {
            "n": int(v.sum()), "median_dist": round(float(np.median(dist)), 4),
            "within_oks_0.5": round(float((_keypoint_oks(dist, k) >= 0.5).mean()), 4),
            "median_along_axis": round(float(np.median(along)), 4)}
    return out


def hip_shifts(table: dict[str, dict]) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """(median along-axis hip offset of the COCO-convention sources by joint index; per
    LSP-family source, the shift that moves its hips to that convention, sqrt(area) units,
    only where it is at least :data:`MIN_HIP_SHIFT`) from an :func:`agreement` table by
    source."""
    ref = {k: float(np.median([table[s][COCO_KEYPOINT_NAMES[k]]["median_along_axis"]
                               for s in COCO_CONVENTION if COCO_KEYPOINT_NAMES[k] in table[s]]))
           for k in HIPS}
    shift = {}
    for s in LSP_FAMILY:
        row = {k: round(table[s][COCO_KEYPOINT_NAMES[k]]["median_along_axis"] - ref[k], 4)
               for k in HIPS}
        # only a clear convention difference is corrected; noise is left alone
        shift[s] = {k: v for k, v in row.items() if abs(v) >= MIN_HIP_SHIFT}
    return ref, shift


# --------------------------------------------------------------------------- variants


def add_faces(ann: dict, kps: np.ndarray, t: np.ndarray, wh: tuple[int, int]) -> int:
    """Teacher face points ``t`` (17, 3) into ``kps`` (17, 3) in place where gated (no human
    face label, head joints present, :data:`FACE_MIN_SCORE`); returns the count added."""
    if (kps[list(FACE), 2] > 0).any():
        return 0
    gate = head_gate(ann)
    return 0 if gate is None else gate_face_points(kps, t, gate, wh, FACE_MIN_SCORE)[0]


def _correct(variant: str, source: str, ann: dict, labels: np.ndarray, t: np.ndarray,
             scale: float, axis: np.ndarray, wh: tuple[int, int], shift: dict[int, float],
             c: dict[str, int]) -> np.ndarray:
    """One person's (17, 3) labels of ``variant``; ``c`` counts the changes."""
    kps = labels.copy()
    c["faces"] += add_faces(ann, kps, t, wh)
    if variant != "faces":
        for k, s in shift.items():
            if kps[k, 2] > 0:
                kps[k, :2] -= s * scale * axis
                kps[k, 0] = min(max(kps[k, 0], 0.0), wh[0] - 1.0)
                kps[k, 1] = min(max(kps[k, 1], 0.0), wh[1] - 1.0)
                c["hips_moved"] += 1
    if variant == "faces_hips_gated" and source == "lspet":
        for k in LIMBS:
            if kps[k, 2] <= 0 or t[k, 2] < GATE_MIN_SCORE:
                continue
            d = np.linalg.norm(labels[k, :2] - t[k, :2]) / scale
            if _keypoint_oks(d, k) >= GATE_MIN_OKS:
                kps[k, :2] = t[k, :2]
                c["joints_from_teacher"] += 1
    return kps


def write_variants(data: str | os.PathLike, teacher_dir: str | os.PathLike,
                   out: str | os.PathLike, hip_shift: dict[str, dict[int, float]],
                   ) -> dict[str, dict[str, dict[str, int]]]:
    """Write the :data:`VARIANTS` of each LSP-family source; returns counts (faces,
    hips_moved, joints_from_teacher) by variant and source."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for variant in VARIANTS:
        counts[variant] = {}
        for source in LSP_FAMILY:
            coco, anns, teacher = load(data, teacher_dir, source)
            labels, scale, axis = geometry(anns, teacher)
            sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
            c = {"faces": 0, "hips_moved": 0, "joints_from_teacher": 0}
            for i, a in enumerate(anns):
                if not np.isfinite(teacher[i]).all():
                    continue
                kps = _correct(variant, source, a, labels[i], teacher[i], scale[i], axis[i],
                               sizes[a["image_id"]], hip_shift[source], c)
                a["keypoints"] = [round(float(v), 2) for v in kps.reshape(-1)]
                a["num_keypoints"] = int((kps[:, 2] > 0).sum())
            info = dict(coco.get("info") or {})
            info["teacher_labels"] = {
                "variant": variant, "teacher": "MoveNet Thunder (Apache-2.0), flip-averaged",
                "hip_shift": {COCO_KEYPOINT_NAMES[k]: v for k, v in hip_shift[source].items()},
                **c}
            coco["info"] = info
            dest = Path(out) / variant / source / "annotations.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dest, json.dumps(coco))
            counts[variant][source] = c
    return counts


def teacher_labels(data: str | os.PathLike, teacher_dir: str | os.PathLike,
                   out: str | os.PathLike, table: str | os.PathLike | None = None,
                   ) -> dict[str, Any]:
    """Agreement table of every source, hip shifts and the label variants under ``out``.

    Returns the report (``teacher``, ``units``, ``agreement`` by source and joint,
    ``hip_shift`` and ``hip_reference`` by joint name, ``variants`` counts), also written as
    JSON to ``table`` when given.

    Raises:
        FileNotFoundError: a source has no ``<teacher_dir>/<source>.npz``.
    """
    teacher_dir = Path(teacher_dir)
    for source in ALL_SOURCES:
        if not (teacher_dir / f"{source}.npz").is_file():
            raise FileNotFoundError(f"no teacher keypoints for {source} in {teacher_dir}")
    rows = {}
    for source in ALL_SOURCES:
        _, anns, teacher = load(data, teacher_dir, source)
        labels, scale, axis = geometry(anns, teacher)
        rows[source] = agreement(labels, teacher, scale, axis)
    ref, shift = hip_shifts(rows)
    counts = write_variants(data, teacher_dir, out, shift)
    report = {"teacher": TEACHER_NOTE,
              "units": "distances and offsets in sqrt(annotation area); offset = label - "
                       "teacher along the teacher's shoulders->hips axis (+ = towards feet)",
              "agreement": rows,
              "hip_shift": {s: {COCO_KEYPOINT_NAMES[k]: v for k, v in sh.items()}
                            for s, sh in shift.items()},
              "hip_reference": {COCO_KEYPOINT_NAMES[k]: v for k, v in ref.items()},
              "variants": counts}
    if table is not None:
        atomic_write_text(table, json.dumps(report, indent=1) + "\n")
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The limb rows of a :func:`teacher_labels` report as a Markdown table: per source and
    joint, median distance / share within OKS 0.5 / median offset along the body axis."""
    joints = list(COCO_KEYPOINT_NAMES[5:])
    lines = ["| source | " + " | ".join(joints) + " |", "|---|" + "---:|" * len(joints)]
    for s, rows in report["agreement"].items():
        cells = [f"{rows[j]['median_dist']:.3f} / {100 * rows[j]['within_oks_0.5']:.0f}% / "
                 f"{rows[j]['median_along_axis']:+.3f}" if j in rows else "-" for j in joints]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def pass_main(argv: Sequence[str] | None = None) -> int:
    """The teacher pass from the command line (``tools/teacher_pass.py``); exit 2 when an
    input is missing."""
    ap = argparse.ArgumentParser(
        description="Run the teacher (MoveNet Thunder, flip-averaged) over every training "
                    "person once.", allow_abbrev=False)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default=",".join(ALL_SOURCES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="first N people per source (smoke test)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        teacher_pass(args.data, args.teacher, args.out, args.sources.split(","), args.threads,
                     args.limit)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    return 0


def labels_main(argv: Sequence[str] | None = None) -> int:
    """Agreement table and label variants from the command line (``tools/teacher_labels.py``);
    prints the Markdown table, the hip shifts and the counts. Exit 2 without teacher files."""
    ap = argparse.ArgumentParser(
        description="Per-joint teacher/label agreement and teacher-corrected label variants.",
        allow_abbrev=False)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--table", type=Path, help="write the agreement table JSON here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = teacher_labels(args.data, args.teacher_dir, args.out, args.table)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    print(markdown_table(report))
    print(f"hip shifts (sqrt(area) along the body axis): {report['hip_shift']}")
    print(json.dumps(report["variants"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evopose_sdk.training.teacher_labels {pass,labels} ...``."""
    from evopose_sdk.cli_shell import run_subcommand  # noqa: PLC0415

    return run_subcommand("evopose_sdk.training.teacher_labels",
                          {"pass": pass_main, "labels": labels_main}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
