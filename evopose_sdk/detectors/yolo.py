"""Ultralytics YOLO person detectors: an ONNX file exported by ``ultralytics``
(:class:`YOLOOnnxDetector`, run by ONNX Runtime alone) and the ``ultralytics`` package
itself when it is installed (:class:`UltralyticsDetector`).
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
from evopose_sdk.detectors.yolox import is_yolox_layout
from evopose_sdk.errors import DetectorError


class YOLOOnnxDetector:
    """A YOLO detector exported to ONNX by ultralytics (``yolo export format=onnx``).

    Handles the raw head ``(1, 4 + C, N)`` (cx, cy, w, h, class scores; person = class 0;
    NMS done here) and exports with embedded NMS or end-to-end heads ``(1, N, 6)``
    (x1, y1, x2, y2, score, class).

    Args:
        path: ``.onnx`` file. score_threshold: minimum person score. nms_iou: NMS IoU.
        person_class: class index of "person" (0 for COCO-trained YOLO).
        threads: onnxruntime intra-op threads. device: ONNX Runtime device (default CPU).
    """

    #: calls from several threads at once are safe (no state changes in detect)
    thread_safe = True

    def __init__(self, path: str | os.PathLike, score_threshold: float = 0.25,
                 nms_iou: float = 0.45, person_class: int = 0, threads: int | None = None,
                 max_detections: int | None = 100, device: str | None = None) -> None:
        self.path = Path(path)
        self.session = _onnx_session(self.path, threads, "YOLO ONNX", device)
        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4 or inp.shape[1] != 3:
            raise DetectorError(f"{self.path.name} is not a YOLO detector: input shape "
                                f"{inp.shape}, expected (1, 3, H, W)")
        if is_yolox_layout(inp.shape, self.session.get_outputs()[0].shape):
            raise DetectorError(f"{self.path.name} is a YOLOX export (output "
                                f"{self.session.get_outputs()[0].shape}): use "
                                "YOLOXOnnxDetector, which make_detector picks for it")
        h, w = inp.shape[2], inp.shape[3]
        self.input_hw = (h if isinstance(h, int) else 640, w if isinstance(w, int) else 640)
        self.input_name = inp.name
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.person_class = int(person_class)
        self.max_detections = max_detections

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4), scores (n,) of people."""
        h, w = _check_image(image_bgr)
        padded, r, (left, top) = letterbox(image_bgr, self.input_hw)
        blob = padded[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        out = np.asarray(self.session.run(None, {self.input_name: blob})[0])
        boxes, scores = self._parse(out)
        if len(boxes) == 0:
            return _empty()
        boxes = (boxes - np.array([left, top, left, top], np.float32)) / r
        return _finish(boxes, scores, (h, w), self.max_detections)

    def _parse(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if out.ndim == 3 and out.shape[0] == 1 and out.shape[2] == 6:  # embedded NMS
            det = out[0]
            det = det[(det[:, 5].round().astype(int) == self.person_class)
                      & (det[:, 4] >= self.score_threshold)]
            return det[:, :4].astype(np.float32), det[:, 4].astype(np.float32)
        if out.ndim == 3 and out.shape[0] == 1 and out.shape[1] > 4 + self.person_class:
            pred = out[0].T  # (N, 4 + C)
            scores = pred[:, 4 + self.person_class]
            pred, scores = pred[scores >= self.score_threshold], scores[scores >= self.score_threshold]
            if len(pred) == 0:
                return _empty()
            cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
            keep = nms_boxes(boxes, scores, self.score_threshold, self.nms_iou)
            return boxes[keep].astype(np.float32), scores[keep].astype(np.float32)
        raise DetectorError(f"{self.path.name}: unexpected YOLO output shape {out.shape}; "
                            "expected (1, 4 + classes, N) or (1, N, 6)")


class UltralyticsDetector:
    """The ``ultralytics`` package's YOLO (``YOLO(weights)``), when it is installed.

    Args:
        weights: a ``.pt`` (or any file ultralytics loads). score_threshold, nms_iou: passed
            as ``conf`` and ``iou``. device: ultralytics device string (None = its default).
    """

    def __init__(self, weights: str | os.PathLike = "yolo11n.pt", score_threshold: float = 0.25,
                 nms_iou: float = 0.45, device: str | None = None,
                 max_detections: int | None = 100) -> None:
        try:
            from ultralytics import YOLO
        except ImportError:
            raise DetectorError("UltralyticsDetector needs the ultralytics package "
                                "(pip install ultralytics); or export the model to ONNX and "
                                "use YOLOOnnxDetector") from None
        self.model = YOLO(os.fspath(weights))
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.device = device
        self.max_detections = max_detections

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4), scores (n,) of people."""
        h, w = _check_image(image_bgr)
        kw = {"device": self.device} if self.device else {}
        res = self.model(image_bgr, classes=[0], conf=self.score_threshold, iou=self.nms_iou,
                         verbose=False, **kw)[0]
        boxes = np.asarray(res.boxes.xyxy.cpu().numpy(), np.float32).reshape(-1, 4)
        scores = np.asarray(res.boxes.conf.cpu().numpy(), np.float32).reshape(-1)
        return _finish(boxes, scores, (h, w), self.max_detections)
