"""Keypoint pseudo-labeller: a pretrained single-person pose model (the teacher) that labels
the joints of training people (:mod:`evopose_sdk.training.teacher_labels`), adds face points
to people whose source labels none (:func:`pseudo_label_faces`, ``tools/pseudo_label_faces.py``)
and is a peer in benchmarks.

Only MoveNet SinglePose (Lightning 192, Thunder 256; Apache-2.0) as TFLite, run with
``ai_edge_litert`` (extra ``[tflite]``).

    python -m evopose_sdk.training.pseudo_labeller --data ../shared/data \
        --teacher /tmp/peers/models/movenet_thunder.tflite --out runs/pseudo_faces \
        [--sources lsp,lspet,parse] [--min-score 0.3]

Face points (nose, eyes, ears) are kept where (a) the teacher's score is at least
``min_score`` and (b) the point lies within one head length (|head_top - neck|, the sources'
``extra_joints``) of the head centre, so a teacher that looked at the wrong person cannot add
a face far from the labelled head. Human labels are never changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.geometry import apply_affine, crop_affine, invert_affine, warp_crop
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, flip_permutation


class MoveNetSinglePose:
    """MoveNet SinglePose TFLite on a 1.25x square crop around a person's box.

    Args:
        path: ``movenet_{lightning,thunder}.tflite`` (uint8, int32 or float32 input).
        threads: interpreter threads.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp, self.out = self.it.get_input_details()[0], self.it.get_output_details()[0]
        self.side = int(self.inp["shape"][1])
        self.dtype = self.inp["dtype"]
        if self.dtype not in (np.uint8, np.int32, np.float32):
            raise ValueError(f"{path}: input dtype {self.dtype} is not uint8/int32/float32")
        self.it.set_tensor(self.inp["index"], np.zeros(self.inp["shape"], self.dtype))
        self.it.invoke()  # warm-up

    def _run(self, crop_rgb: np.ndarray) -> np.ndarray:
        """(side, side, 3) RGB crop -> (17, 3) x, y in crop pixels, score."""
        self.it.set_tensor(self.inp["index"], crop_rgb[None].astype(self.dtype))
        self.it.invoke()
        kp = np.asarray(self.it.get_tensor(self.out["index"]), np.float64).reshape(17, 3)
        return np.concatenate([kp[:, [1, 0]] * self.side - 0.5, kp[:, 2:3]], axis=1)

    def _run_flip(self, square_rgb: np.ndarray, flip: bool) -> np.ndarray:
        """(side, side, 3) RGB -> (17, 3) x, y in its pixels, score; ``flip`` averages a plain
        and a mirrored pass (mapped back: x -> side - 1 - x, left/right swapped)."""
        kp = self._run(square_rgb)
        if flip:
            kf = self._run(np.ascontiguousarray(square_rgb[:, ::-1]))
            kf[:, 0] = self.side - 1.0 - kf[:, 0]
            kf = kf[flip_permutation(17, COCO_FLIP_PAIRS)]
            kp = (kp + kf) / 2.0
        return kp

    def __call__(self, image_bgr: np.ndarray, box_xywh, flip: bool = False) -> np.ndarray:
        """(H, W, 3) BGR image, box [x, y, w, h] in pixels -> (17, 3) x, y (pixels), score.

        ``flip``: also run the mirrored crop and average positions and scores.
        """
        x, y, w, h = (float(v) for v in box_xywh)
        s = 1.25 * max(w, h, 1.0)
        mat = crop_affine(np.array([x + w / 2, y + h / 2]), np.array([s, s]),
                          (self.side, self.side))
        crop = cv2.cvtColor(warp_crop(image_bgr, mat, (self.side, self.side)),
                            cv2.COLOR_BGR2RGB)
        kp = self._run_flip(crop, flip)
        xy = apply_affine(kp[:, :2], invert_affine(mat))
        return np.concatenate([xy, kp[:, 2:3]], axis=1)

    def on_crop(self, crop_rgb: np.ndarray, flip: bool = False) -> np.ndarray:
        """Keypoints of the person filling a model-input crop, as the student sees it.

        Args:
            crop_rgb: (h, w, 3) uint8 RGB crop, any size; it is letterboxed (black bars) into
                the teacher's square input, keeping its aspect ratio.
            flip: also run the mirrored input and average.

        Returns:
            (17, 3) x, y in the crop's pixels (pixel centres), score in [0, 1].
        """
        h, w = crop_rgb.shape[:2]
        f = self.side / max(h, w)
        # pixel centres: x' + 0.5 = f (x + 0.5) + pad
        mat = np.array([[f, 0.0, 0.5 * f - 0.5 + (self.side - f * w) / 2],
                        [0.0, f, 0.5 * f - 0.5 + (self.side - f * h) / 2]])
        square = warp_crop(crop_rgb, mat, (self.side, self.side))
        kp = self._run_flip(square, flip)
        xy = apply_affine(kp[:, :2], invert_affine(mat))
        return np.concatenate([xy, kp[:, 2:3]], axis=1)


def peer_predict(peer: MoveNetSinglePose):
    """``peer`` as an :data:`evopose_sdk.training.evaluate.PredictFn` (RGB image, xyxy
    boxes -> keypoints (N, 17, 3), instance scores = mean keypoint score), one box a call."""

    def predict(image_rgb: np.ndarray, boxes_xyxy: list, kset) -> tuple[np.ndarray, np.ndarray]:
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        kps = np.stack([peer(bgr, [x1, y1, x2 - x1, y2 - y1]) for x1, y1, x2, y2 in boxes_xyxy])
        return kps, kps[:, :, 2].mean(axis=1)

    return predict


def head_gate(ann: dict) -> tuple[np.ndarray, float] | None:
    """(head centre (2,), head length) of a COCO annotation from its ``extra_joints`` neck and
    head top (LSP, LSPET, PARSE), or None: teacher face points farther than one head length
    from the centre are not the labelled person's."""
    ex = ann.get("extra_joints") or {}
    neck, top = ex.get("neck"), ex.get("head_top")
    if not neck or not top or neck[2] <= 0 or top[2] <= 0:
        return None
    a, b = np.array(neck[:2], float), np.array(top[:2], float)
    length = float(np.linalg.norm(b - a))
    return ((a + b) / 2, length) if length >= 2.0 else None


# --------------------------------------------------------------------------- face pseudo-labels

#: nose, left_eye, right_eye, left_ear, right_ear (COCO order)
FACE = (0, 1, 2, 3, 4)
log = logging.getLogger(__name__)


def train_people(src: str | os.PathLike, limit: int | None = None,
                 ) -> tuple[dict, dict[int, dict], list[dict]]:
    """(COCO dict of ``<src>/annotations.json``, its images by id, the annotations of its
    train-split images: the first ``limit`` of them when given)."""
    from evopose_sdk.training.sources import read_coco_json  # noqa: PLC0415

    coco = read_coco_json(Path(src) / "annotations.json")
    images = {im["id"]: im for im in coco["images"]}
    anns = [a for a in coco["annotations"] if images[a["image_id"]].get("split") == "train"]
    return coco, images, anns[:limit] if limit else anns


def gate_face_points(kps: np.ndarray, pred: np.ndarray, gate: tuple[np.ndarray, float],
                     wh: tuple[int, int], min_score: float) -> tuple[int, int, int]:
    """Copy the teacher's face points into a person's keypoints where they pass the gate.

    Args:
        kps: (17, 3) x, y (pixels), visibility; changed in place (visibility 2 where added).
        pred: (17, 3) teacher x, y (pixels), score.
        gate: :func:`head_gate` of the person (head centre (2,), head length in pixels).
        wh: image (width, height) in pixels; added points are clamped into it.
        min_score: a face point below this teacher score is not added.

    Returns:
        (points added, rejected for a low score, rejected as farther than one head length).
    """
    centre, length = gate
    added = low = far = 0
    for k in FACE:
        x, y, s = pred[k]
        if s < min_score:
            low += 1
        elif np.hypot(x - centre[0], y - centre[1]) > length:
            far += 1
        else:
            kps[k] = (min(max(x, 0.0), wh[0] - 1.0), min(max(y, 0.0), wh[1] - 1.0), 2)
            added += 1
    return added, low, far


def label_source(src: str | os.PathLike, teacher: MoveNetSinglePose, min_score: float = 0.3,
                 limit: int | None = None) -> tuple[dict, dict[str, int]]:
    """Teacher face points for the train people of one source whose labels have none.

    Args:
        src: source folder (``annotations.json``, ``images/``) with ``extra_joints`` neck and
            head top (LSP, LSPET, PARSE): people without them get no face.
        teacher: the pseudo-labeller, run on each gated person's box.
        min_score: least teacher score of a kept face point.
        limit: only the first ``limit`` train people (a smoke test); the result then holds
            only those annotations.

    Returns:
        (the COCO dict with face points added, visibility 2, marked ``pseudo_face``; counts:
        people, people_with_face, points, rejected_score, rejected_far, no_head_joints).
    """
    from tqdm import tqdm  # noqa: PLC0415

    src = Path(src)
    coco, images, anns = train_people(src, limit)
    counts = {"people": len(anns), "people_with_face": 0, "points": 0, "rejected_score": 0,
              "rejected_far": 0, "no_head_joints": 0}
    cache: dict[int, np.ndarray | None] = {}
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
        added, low, far = gate_face_points(kps, teacher(img, a["bbox"]), gate,
                                           (img.shape[1], img.shape[0]), min_score)
        counts["rejected_score"] += low
        counts["rejected_far"] += far
        if added:
            a["keypoints"] = [round(float(v), 2) for v in kps.reshape(-1)]
            a["num_keypoints"] = int((kps[:, 2] > 0).sum())
            a["pseudo_face"] = {"teacher": "movenet_thunder", "min_score": min_score,
                                "points": added}
            counts["people_with_face"] += 1
            counts["points"] += added
    if limit:
        coco["annotations"] = anns
    info = dict(coco.get("info") or {})
    info["pseudo_face_labels"] = ("nose/eyes/ears added by MoveNet Thunder (Apache-2.0) where "
                                  f"score >= {min_score} and within one head length of the "
                                  "labelled head; human labels unchanged")
    coco["info"] = info
    return coco, counts


def pseudo_label_faces(data: str | os.PathLike, teacher_path: str | os.PathLike,
                       out: str | os.PathLike, sources: Sequence[str] = ("lsp", "lspet", "parse"),
                       min_score: float = 0.3, threads: int = 1,
                       limit: int | None = None) -> dict[str, Any]:
    """Write ``<out>/<source>/annotations.json`` (:func:`label_source`; the images stay in
    ``<data>/<source>/images``) and ``<out>/summary.json`` (teacher file name, min_score,
    counts per source); returns the summary.

    Raises:
        FileNotFoundError: no teacher file, or a source without ``annotations.json`` (checked
            before anything is written).
    """
    data, out, teacher_path = Path(data), Path(out), Path(teacher_path)
    _require_inputs(teacher_path, [data / s for s in sources])
    teacher = MoveNetSinglePose(teacher_path, threads)
    summary: dict[str, Any] = {"teacher": teacher_path.name, "min_score": min_score,
                               "sources": {}}
    for name in sources:
        coco, counts = label_source(data / name, teacher, min_score, limit)
        (out / name).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / name / "annotations.json", json.dumps(coco))
        summary["sources"][name] = counts
        log.info("%s: %s", name, counts)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _require_inputs(teacher_path: Path, sources: Sequence[Path]) -> None:
    """Raise FileNotFoundError naming a missing teacher model or source annotation file."""
    if not teacher_path.is_file():
        raise FileNotFoundError(f"no teacher model at {teacher_path} "
                                "(run ../shared/peers/get_peers.sh)")
    for src in sources:
        if not (src / "annotations.json").is_file():
            raise FileNotFoundError(f"{src}/annotations.json not found")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evopose_sdk.training.pseudo_labeller`` (and ``tools/pseudo_label_faces.py``):
    face pseudo-labels for LSP/LSPET/PARSE; prints the summary JSON. Exit 2 on missing inputs."""
    ap = argparse.ArgumentParser(
        description="Pseudo-label the face keypoints of people whose source labels none "
                    "(LSP, LSPET, PARSE).")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default="lsp,lspet,parse")
    ap.add_argument("--min-score", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, help="first N people per source (smoke test)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        summary = pseudo_label_faces(args.data, args.teacher, args.out, args.sources.split(","),
                                     args.min_score, args.threads, args.limit)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
