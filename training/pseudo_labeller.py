"""Keypoint pseudo-labeller: a pretrained single-person pose model (the teacher) that labels
the joints of training people (tools/teacher_pass.py), and is a peer in benchmarks.

Only MoveNet SinglePose (Lightning 192, Thunder 256; Apache-2.0) as TFLite, run with
``ai_edge_litert`` (extra ``[tflite]``).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

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
