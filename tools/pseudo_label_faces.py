"""Pseudo-label the face keypoints of people whose source labels none (LSP, LSPET, PARSE).

    python tools/pseudo_label_faces.py --data ../shared/data --teacher /tmp/peers/models/movenet_thunder.tflite \
        --out runs/pseudo_faces [--sources lsp,lspet,parse] [--min-score 0.3]

The teacher (MoveNet Thunder, Apache-2.0, built by ../shared/peers/get_peers.sh) runs on a
1.25x square crop around each person's box. Its nose, eyes and ears are kept where
(a) the teacher's score is at least ``--min-score`` and (b) the point lies within one
head length (|head_top - neck|, the sources' ``extra_joints``) of the head centre, so a
teacher that looked at the wrong person cannot add a face far from the labelled head.
Human labels are never changed. Writes ``<out>/<source>/annotations.json`` (the images stay
in the data folder: point a training config's ``images`` at them) and ``<out>/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.training.pseudo_labeller import head_gate

log = logging.getLogger("pseudo_label_faces")
FACE = (0, 1, 2, 3, 4)  # nose, left_eye, right_eye, left_ear, right_ear (COCO order)


def label_source(src: Path, teacher, min_score: float, limit: int | None) -> tuple[dict, dict]:
    """Annotations of ``src`` with teacher face points added; and counts."""
    from tqdm import tqdm

    coco = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    images = {im["id"]: im for im in coco["images"]}
    anns = [a for a in coco["annotations"] if images[a["image_id"]].get("split") == "train"]
    if limit:
        anns = anns[:limit]
    counts = {"people": len(anns), "people_with_face": 0, "points": 0, "rejected_score": 0,
              "rejected_far": 0, "no_head_joints": 0}
    cache: dict[int, np.ndarray] = {}
    for a in tqdm(anns, desc=src.name, mininterval=10):
        kps = np.asarray(a["keypoints"], float).reshape(17, 3)
        if (kps[list(FACE), 2] > 0).any():
            continue  # human face labels exist: keep them as they are
        gate = head_gate(a)
        if gate is None:
            counts["no_head_joints"] += 1
            continue
        im = images[a["image_id"]]
        if im["id"] not in cache:
            cache.clear()
            cache[im["id"]] = cv2.imread(str(src / "images" / im["file_name"]), cv2.IMREAD_COLOR)
        img = cache[im["id"]]
        if img is None:
            continue
        pred = teacher(img, a["bbox"])
        centre, length = gate
        added = 0
        for k in FACE:
            x, y, s = pred[k]
            if s < min_score:
                counts["rejected_score"] += 1
                continue
            if np.hypot(x - centre[0], y - centre[1]) > length:
                counts["rejected_far"] += 1
                continue
            h_img, w_img = img.shape[:2]
            kps[k] = (min(max(x, 0.0), w_img - 1.0), min(max(y, 0.0), h_img - 1.0), 2)
            added += 1
        if added:
            a["keypoints"] = [round(float(v), 2) for v in kps.reshape(-1)]
            a["num_keypoints"] = int((kps[:, 2] > 0).sum())
            a["pseudo_face"] = {"teacher": "movenet_thunder", "min_score": min_score,
                                "points": added}
            counts["people_with_face"] += 1
            counts["points"] += added
    coco["annotations"] = anns if limit else coco["annotations"]
    info = dict(coco.get("info") or {})
    info["pseudo_face_labels"] = ("nose/eyes/ears added by MoveNet Thunder (Apache-2.0) where "
                                  f"score >= {min_score} and within one head length of the "
                                  "labelled head; human labels unchanged")
    coco["info"] = info
    return coco, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default="lsp,lspet,parse")
    ap.add_argument("--min-score", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, help="first N people per source (smoke test)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.teacher.is_file():
        print(f"error: no teacher model at {args.teacher} (run ../shared/peers/get_peers.sh)",
              file=sys.stderr)
        return 2
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose

    teacher = MoveNetSinglePose(args.teacher, args.threads)
    summary = {"teacher": args.teacher.name, "min_score": args.min_score, "sources": {}}
    for name in args.sources.split(","):
        src = args.data / name
        if not (src / "annotations.json").is_file():
            print(f"error: {src}/annotations.json not found", file=sys.stderr)
            return 2
        coco, counts = label_source(src, teacher, args.min_score, args.limit)
        (args.out / name).mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / name / "annotations.json", json.dumps(coco))
        summary["sources"][name] = counts
        log.info("%s: %s", name, counts)
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
