"""Run the teacher (MoveNet Thunder, flip-averaged) over every training person once.

    python tools/teacher_pass.py --data ../shared/data --teacher /tmp/peers/models/movenet_thunder.tflite \
        --out runs/teacher [--sources lsp,lspet,parse,litehrnet,julito,coco128]

Writes ``<out>/<source>.npz`` with ``ann_ids`` (n,) and ``teacher`` (n, 17, 3): x, y in image
pixels and score, the mean of a plain and a mirrored pass on the same 1.25x square crop.
``tools/teacher_labels.py`` turns these into the per-joint agreement table and the label
variants (faces, hip convention, gated LSPET joints). The pass is the expensive part
(~30 ms a person on one core); it is resumable per source.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_bytes

log = logging.getLogger("teacher_pass")


def run_source(src: Path, teacher, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(ann_ids (n,), teacher keypoints (n, 17, 3)) for the train people of ``src``."""
    from tqdm import tqdm

    coco = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    images = {im["id"]: im for im in coco["images"]}
    anns = [a for a in coco["annotations"] if images[a["image_id"]].get("split") == "train"]
    if limit:
        anns = anns[:limit]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default="lsp,lspet,parse,litehrnet,julito,coco128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="first N people per source (smoke test)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.teacher.is_file():
        log.error("no teacher model at %s (run ../shared/peers/get_peers.sh)", args.teacher)
        return 2
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose

    teacher = MoveNetSinglePose(args.teacher, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sources.split(","):
        dest = args.out / f"{name}.npz"
        if dest.is_file() and not args.limit:
            log.info("%s: done already (%s)", name, dest)
            continue
        src = args.data / name
        if not (src / "annotations.json").is_file():
            log.error("%s/annotations.json not found", src)
            return 2
        ids, kps = run_source(src, teacher, args.limit)
        buf = io.BytesIO()
        np.savez(buf, ann_ids=ids, teacher=kps, teacher_name=args.teacher.name, flip=True)
        atomic_write_bytes(dest, buf.getvalue())
        log.info("%s: %d people -> %s", name, len(ids), dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
