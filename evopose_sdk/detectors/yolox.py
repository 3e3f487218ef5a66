"""YOLOX person detectors (Megvii, COCO, Apache-2.0): the raw-head layout, the two-view
(frame + mirror image) fusion, and :class:`YOLOXOnnxDetector`, which reads YOLOX-nano shipped
in ``models/detectors/`` or any file exported by YOLOX's ``tools/export_onnx.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evopose_sdk.detectors.base import (
    _check_image,
    _empty,
    _finish,
    _onnx_session,
    letterbox,
    nms_boxes,
)
from evopose_sdk.errors import DetectorError
from evopose_sdk.registry import models_dir

#: YOLOX's output strides (P3-P5), finest first: the order of the cells in its raw output
YOLOX_STRIDES = (8, 16, 32)


def yolox_cells(input_hw: tuple[int, int], strides: tuple[int, ...] = YOLOX_STRIDES) -> int:
    """Number of predictions (grid cells of every stride) of a YOLOX head at ``input_hw``."""
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in strides)


def is_yolox_layout(input_shape: list | tuple, output_shape: list | tuple) -> bool:
    """Whether an ONNX detector's input and first output shapes are YOLOX's raw head: input
    (1, 3, H, W), output (1, N, 5 + C) with N the grid cells of strides 8, 16, 32 (or N and
    H, W all named, not fixed). Ultralytics' raw head is (1, 4 + C, N), its NMS export (1, K, 6)."""
    if len(input_shape) != 4 or len(output_shape) != 3 or input_shape[1] != 3:
        return False
    if not isinstance(output_shape[2], int) or output_shape[2] <= 5:
        return False
    h, w, n = input_shape[2], input_shape[3], output_shape[1]
    if isinstance(h, int) and isinstance(w, int):
        return n == yolox_cells((h, w))
    return not isinstance(n, int)


def yolox_detector_path() -> Path:
    """The shipped YOLOX-nano ONNX file (``models/detectors/``, card and licence beside it)."""
    return models_dir() / "detectors" / "yolox_nano.onnx"


def fuse_views(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
               min_iou: float = 0.55) -> tuple[np.ndarray, np.ndarray]:
    """Average two views' detections of one image (e.g. the frame and its mirror image).

    Going down both views' boxes by score, each box not yet paired takes the highest-scoring
    unpaired box of the other view that overlaps it by IoU >= ``min_iou`` (not the one that
    overlaps most: a weak box nested in a person's box must not steal it): the pair becomes
    one box, the score-weighted mean of the two, scoring the mean of the two scores. A box the
    other view lacks keeps its place at half its score (the other view's score counts as 0).
    """
    from evopose_sdk.tracking import box_iou

    (ba, sa), (bb, sb) = a, b
    iou = box_iou(ba, bb)
    free_a, free_b = np.ones(len(ba), bool), np.ones(len(bb), bool)
    boxes, scores = [], []
    order = sorted([(float(s), 0, i) for i, s in enumerate(sa)]
                   + [(float(s), 1, j) for j, s in enumerate(sb)], reverse=True)
    for _, view, i in order:
        if not (free_a if view == 0 else free_b)[i]:
            continue
        row = iou[i] if view == 0 else iou[:, i]
        cand = np.flatnonzero((free_b if view == 0 else free_a) & (row >= min_iou))
        if len(cand) == 0:
            (free_a if view == 0 else free_b)[i] = False
            boxes.append(ba[i] if view == 0 else bb[i])
            scores.append((sa[i] if view == 0 else sb[i]) / 2)
            continue
        j = int(cand[np.argmax((sb if view == 0 else sa)[cand])])
        ia, ib = (i, j) if view == 0 else (j, i)
        free_a[ia] = free_b[ib] = False
        wa, wb = float(sa[ia]), float(sb[ib])
        boxes.append((ba[ia] * wa + bb[ib] * wb) / max(wa + wb, 1e-9))
        scores.append((wa + wb) / 2)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))


class YOLOXOnnxDetector:
    """YOLOX (Ge et al. 2021, Megvii; COCO, 80 classes) exported to ONNX by YOLOX's
    ``tools/export_onnx.py``: YOLOX-nano by default (shipped in ``models/detectors/``;
    ``detector="yolox"``).

    Input contract (YOLOX's own ``preproc``): ``images`` (1, 3, S, S) float32, BGR, 0-255 (no
    normalisation), the frame resized keeping its aspect ratio into the top-left corner and
    padded with 114. Output (1, N, 5 + C), one row per grid cell of strides 8, 16, 32 (row-major
    within each stride): ``dx, dy, log w, log h`` (not decoded: centre = (cell + d) x stride,
    size = exp(log) x stride), objectness and C class probabilities (sigmoids applied in the
    graph). Person score = objectness x P(person).

    With ``flip`` (the default; ``detect(image, flip=...)`` overrides it per call, as
    :meth:`~evopose_sdk.PoseEstimator.detect` does with the estimator's flip test: on for
    photos, off for video frames) the detector also runs on the mirror image and averages the
    two views (:func:`fuse_views`): each view's boxes scoring at least :attr:`VIEW_FLOOR`,
    merged within the view at IoU :attr:`VIEW_NMS`, are paired across views; then the score
    threshold and IoU NMS. Twice the network time; on dev_val it finds more people at fewer
    false boxes than one view at any threshold (``benchmarks/detector_sweep.py``, figures in
    the card).

    Args:
        path: the ``.onnx`` file (default: the shipped YOLOX-nano).
        score_threshold: keep person boxes scoring at least this.
        nms_iou: IoU above which overlapping person boxes are merged.
        flip: average the frame's and its mirror image's detections.
        input_size: network input side S (a multiple of 32) for a file exported with free
            input sizes (``export_onnx.py --dynamic``; default 416 then); None: the file's.
        person_class: class index of "person" (0 in COCO's 80).
        threads: onnxruntime intra-op threads (None = its default, all cores); 1 by default,
            as in a video it runs on one core beside the pose network (:mod:`~evopose_sdk.video`).
        max_detections: keep at most this many boxes (highest scores).
        device: ONNX Runtime device (``"cpu"`` default, ``"cuda"``, ...).

    The defaults (0.3, NMS 0.6, flip) were chosen on dev_val: the highest person recall whose
    false boxes per image are no more than the SSD detector's at its 0.3 / 0.6 (recall 0.780
    vs 0.697 at 0.536 false boxes per image; one view 0.770 at 0.62).
    """

    #: calls from several threads at once are safe (no state changes in detect)
    thread_safe = True
    #: per-view score floor and within-view NMS IoU before two views are fused
    VIEW_FLOOR, VIEW_NMS = 0.05, 0.7

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.3,
                 nms_iou: float = 0.6, flip: bool = True, input_size: int | None = None,
                 person_class: int = 0, threads: int | None = 1,
                 max_detections: int | None = 100, device: str | None = None) -> None:
        self.path = Path(path) if path is not None else yolox_detector_path()
        self.session = _onnx_session(self.path, threads, "the YOLOX person detector", device)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        if not is_yolox_layout(inp.shape, out.shape) or out.shape[2] <= 5 + person_class:
            raise DetectorError(f"{self.path.name} is not a YOLOX detector: input {inp.shape}, "
                                f"output {out.shape}; expected (1, 3, S, S) and (1, N, 5 + C) "
                                f"with N = {yolox_cells((416, 416))} at S = 416")
        if input_size is not None and (int(input_size) < 32 or int(input_size) % 32):
            raise DetectorError(f"YOLOX input_size must be a multiple of 32; received {input_size}")
        if isinstance(inp.shape[2], int) and isinstance(inp.shape[3], int):
            if input_size is not None and (int(input_size),) * 2 != tuple(inp.shape[2:]):
                raise DetectorError(f"{self.path.name} takes a fixed {inp.shape[3]}x"
                                    f"{inp.shape[2]} input; input_size={input_size} needs a file "
                                    "exported with free input sizes")
            self.input_hw = (int(inp.shape[2]), int(inp.shape[3]))
        else:
            side = int(input_size) if input_size is not None else 416
            self.input_hw = (side, side)
        self.input_name = inp.name
        self.num_classes = int(out.shape[2]) - 5
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.flip = bool(flip)
        self.person_class = int(person_class)
        self.max_detections = max_detections
        cells, strides = [], []
        for s in YOLOX_STRIDES:
            gy, gx = np.mgrid[0:self.input_hw[0] // s, 0:self.input_hw[1] // s]
            cells.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
            strides.append(np.full((gx.size, 1), s))
        self._cells = np.concatenate(cells).astype(np.float32)  # (N, 2) x, y
        self._strides = np.concatenate(strides).astype(np.float32)  # (N, 1)

    def input_blob(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """The network's input for a frame, (1, 3, S, S) float32 BGR 0-255 (top-left
        letterbox, pad 114), and the resize scale."""
        padded, r, _ = letterbox(image_bgr, self.input_hw, centred=False)
        return padded.transpose(2, 0, 1)[None].astype(np.float32), r

    def view(self, image_bgr: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """One network run: person boxes (xyxy, image pixels) and scores of every cell
        scoring at least ``floor``, before NMS."""
        blob, r = self.input_blob(image_bgr)
        out = self.session.run(None, {self.input_name: blob})[0][0]  # (N, 5 + C)
        if out.shape != (len(self._cells), 5 + self.num_classes):
            raise DetectorError(f"{self.path.name}: output {out.shape} at input "
                                f"{self.input_hw}; expected ({len(self._cells)}, "
                                f"{5 + self.num_classes})")
        scores = out[:, 4] * out[:, 5 + self.person_class]
        ok = np.flatnonzero(scores >= floor)
        stride = self._strides[ok]
        centre = (out[ok, :2] + self._cells[ok]) * stride
        half = np.exp(out[ok, 2:4]) * stride / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) / r
        return boxes.astype(np.float32), scores[ok].astype(np.float32)

    def detect(self, image_bgr: np.ndarray, flip: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4), scores (n,) of people; ``flip``
        overrides the detector's own for this call."""
        h, w = _check_image(image_bgr)
        if not (self.flip if flip is None else flip):
            boxes, scores = self.view(image_bgr, self.score_threshold)
        else:
            views = []
            for mirrored in (False, True):
                b, s = self.view(image_bgr[:, ::-1] if mirrored else image_bgr, self.VIEW_FLOOR)
                if mirrored:
                    b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
                keep = nms_boxes(b, s, self.VIEW_FLOOR, self.VIEW_NMS)
                views.append((b[keep], s[keep]))
            boxes, scores = fuse_views(*views)
        if len(boxes) == 0:
            return _empty()
        keep = nms_boxes(boxes, scores, self.score_threshold, self.nms_iou)
        return _finish(boxes[keep], scores[keep], (h, w), self.max_detections)
