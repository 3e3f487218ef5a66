"""The detector protocol and what every detector shares: score filtering + IoU NMS, the
final clip/sort/cap, the image check, the ONNX Runtime session, the letterbox, and the two
detectors that run no network (:class:`StaticBoxes`, :class:`WholeImage`).

The readers of each detector family live beside this module (:mod:`.ssd`, :mod:`.yolo`,
:mod:`.yolox`); :func:`~evopose_sdk.detectors.make_detector` chooses one (:mod:`.factory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from evopose_sdk.errors import DetectorError, InputError


@runtime_checkable
class Detector(Protocol):
    """Finds people in an image. :class:`~evopose_sdk.PoseEstimator` calls one whose
    ``thread_safe`` attribute is True from several threads at once, any other one at a time."""

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4) float32 image pixels, scores (n,) float32."""
        ...


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


def nms_boxes(boxes_xyxy: np.ndarray, scores: np.ndarray, score_threshold: float,
              nms_iou: float) -> np.ndarray:
    """Indices kept by score filtering then IoU NMS (cv2.dnn.NMSBoxes), best first."""
    if len(boxes_xyxy) == 0:
        return np.zeros((0,), np.int64)
    xywh = np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)
    idx = cv2.dnn.NMSBoxes(xywh.astype(np.float64).tolist(), scores.astype(float).tolist(),
                           float(score_threshold), float(nms_iou))
    return np.asarray(idx, dtype=np.int64).reshape(-1)


def _finish(boxes: np.ndarray, scores: np.ndarray, image_hw: tuple[int, int],
            max_detections: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image, drop empty boxes, sort by score, cap the count."""
    h, w = image_hw
    boxes = boxes.astype(np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
    ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    boxes, scores = boxes[ok], scores.astype(np.float32).reshape(-1)[ok]
    order = np.argsort(-scores, kind="stable")
    if max_detections is not None:
        order = order[:max_detections]
    return boxes[order], scores[order]


def _check_image(image_bgr: np.ndarray) -> tuple[int, int]:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
            or image_bgr.dtype != np.uint8 or image_bgr.size == 0:
        shape = getattr(image_bgr, "shape", None)
        raise InputError(f"detectors take (H, W, 3) uint8 BGR images; received shape {shape}")
    return int(image_bgr.shape[0]), int(image_bgr.shape[1])


def _onnx_session(path: Path, threads: int | None, what: str, device: str | None = None) -> Any:
    """An onnxruntime session for a detector file on ``device`` (None: the CPU; see
    :func:`~evopose_sdk.backends.onnx_providers`), ``threads`` intra-op threads (None =
    onnxruntime's default); DetectorError naming ``what`` if it is missing or unloadable."""
    import onnxruntime as ort

    from evopose_sdk.backends import onnx_providers

    if not path.is_file():
        raise DetectorError(f"{what} file not found: {path}")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts,
                                    providers=onnx_providers(device, what))
    except Exception as exc:  # onnxruntime's own exception types
        raise DetectorError(f"cannot load {what} {path}: {exc}") from None


def letterbox(image_bgr: np.ndarray, size_hw: tuple[int, int], pad_value: int = 114,
              centred: bool = True) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to ``size_hw``: centred, as ultralytics does,
    or (``centred=False``) image at the top left, padding right and below, as YOLOX does.

    Returns:
        the padded image, the scale (new / old) and the (left, top) padding in pixels.
    """
    h, w = image_bgr.shape[:2]
    th, tw = size_hw
    r = min(th / h, tw / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    resized = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (w, h) \
        else image_bgr
    left, top = ((tw - nw) / 2.0, (th - nh) / 2.0) if centred else (0.0, 0.0)
    l_px, t_px = int(round(left - 0.1)), int(round(top - 0.1))
    out = cv2.copyMakeBorder(resized, t_px, th - nh - t_px, l_px, tw - nw - l_px,
                             cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return out, r, (float(l_px), float(t_px))


def validate_boxes(boxes_xyxy: np.ndarray | list, image_hw: tuple[int, int] | None = None,
                   what: str = "boxes") -> np.ndarray:
    """Check caller boxes: (n, 4) finite ``x1 < x2, y1 < y2``, overlapping the image.

    Raises:
        InputError: naming the first bad box (wrong shape, not finite, zero area, or
            entirely outside the image).
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), np.float32)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{what} must have shape (n, 4) as x1, y1, x2, y2; received {b.shape}")
    for i, box in enumerate(b):
        if not np.all(np.isfinite(box)):
            raise InputError(f"{what}[{i}] = {box.tolist()} is not finite")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise InputError(f"{what}[{i}] = {box.tolist()} has zero area (need x1 < x2 and "
                             "y1 < y2, in xyxy format)")
        if image_hw is not None:
            h, w = image_hw
            if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
                raise InputError(f"{what}[{i}] = {box.tolist()} lies entirely outside the "
                                 f"{w}x{h} image")
    return b.astype(np.float32)


class StaticBoxes:
    """Boxes given by the caller, returned for every image (clipped to it).

    Args:
        boxes_xyxy: (n, 4) boxes in image pixels. scores: (n,) or None (all 1.0).
    """

    #: calls from several threads at once are safe (no state changes in detect)
    thread_safe = True

    def __init__(self, boxes_xyxy: np.ndarray | list, scores: np.ndarray | list | None = None) -> None:
        self.boxes = validate_boxes(boxes_xyxy)
        s = np.ones(len(self.boxes), np.float32) if scores is None else np.asarray(scores, np.float32).reshape(-1)
        if s.shape != (len(self.boxes),):
            raise InputError(f"scores must have shape ({len(self.boxes)},); received {s.shape}")
        self.scores = s

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = _check_image(image_bgr)
        validate_boxes(self.boxes, (h, w))
        boxes = self.boxes.copy()
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return boxes, self.scores.copy()


class WholeImage:
    """One box covering the whole image (score 1): for single-person crops."""

    #: calls from several threads at once are safe (no state changes in detect)
    thread_safe = True

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = _check_image(image_bgr)
        return np.array([[0, 0, w, h]], np.float32), np.ones((1,), np.float32)
