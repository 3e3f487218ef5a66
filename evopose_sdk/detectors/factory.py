"""Choosing a detector: the names and file suffixes :func:`make_detector` knows, and
:func:`detect_with_flip`, which asks a detector that can also look at the mirror image to do
so or not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evopose_sdk.detectors.base import Detector, WholeImage, _onnx_session
from evopose_sdk.detectors.ssd import SSDMobileNetDetector, SSDPersonOnnxDetector
from evopose_sdk.detectors.yolo import UltralyticsDetector, YOLOOnnxDetector
from evopose_sdk.detectors.yolox import YOLOXOnnxDetector, is_yolox_layout
from evopose_sdk.errors import DetectorError


def detect_with_flip(detector: Detector, image_bgr: np.ndarray, flip: bool | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``detector.detect(image_bgr)``, asking a detector that can also look at the mirror
    image (:class:`YOLOXOnnxDetector`) to do so or not (``flip``; None: its own setting)."""
    if flip is not None and isinstance(detector, YOLOXOnnxDetector):
        return detector.detect(image_bgr, flip=flip)
    return detector.detect(image_bgr)


#: The detector names :func:`make_detector` takes, and what each file suffix means (the one
#: list the API's and the CLI's messages name).
DETECTOR_NAMES = ("default", "ssd", "ssd-mobilenet", "ssd_mobilenet_v2", "yolox", "yolox-nano",
                  "yolox_nano", "ssd-cv2", "ssd_cv2", "none", "whole-image", "whole_image", "full")
DETECTOR_CHOICES = ("'default' (SSD-MobileNetV2), 'yolox' (YOLOX-nano), 'ssd-cv2', 'whole-image' "
                    "or 'none' (the whole image is one person), a YOLO or YOLOX .onnx file, or "
                    "an ultralytics .pt file")


def is_detector_spec(text: str) -> bool:
    """Whether ``text`` names a detector :func:`make_detector` knows (a name of
    :data:`DETECTOR_NAMES`, or a path ending ``.onnx`` / ``.pt``)."""
    key = text.lower()
    return key in DETECTOR_NAMES or key.endswith((".onnx", ".pt"))


def make_detector(spec: str | os.PathLike | Detector | None = "default",
                  score_threshold: float | None = None, nms_iou: float | None = None,
                  threads: int | None = None, device: str | None = None) -> Detector:
    """Turn a detector spec into a :class:`Detector`.

    Args:
        spec: ``"default"`` / ``"ssd"`` (person-only SSD-MobileNetV2 ONNX,
            :class:`SSDPersonOnnxDetector`), ``"yolox"`` (the shipped YOLOX-nano,
            :class:`YOLOXOnnxDetector`), ``"ssd-cv2"`` (the original graph in cv2.dnn, :class:`SSDMobileNetDetector`),
            ``"none"`` / ``"whole-image"`` / None (:class:`WholeImage`), a path ending
            ``.onnx`` (:class:`YOLOXOnnxDetector` when its output is YOLOX's raw head,
            :class:`SSDPersonOnnxDetector` when its outputs are ``boxes`` and ``scores``, else
            :class:`YOLOOnnxDetector`), a ``.pt`` path or ``"yolo*.pt"`` name
            (:class:`UltralyticsDetector`), or an object with a ``detect`` method (returned as is).
        score_threshold, nms_iou: override the detector's defaults (None keeps them).
        threads: onnxruntime threads for an ONNX detector (YOLOX, SSD or YOLO).
        device: ONNX Runtime device of an ONNX detector (None: the CPU).

    Raises:
        DetectorError: unknown spec or a detector that cannot be built.
    """
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        if hasattr(spec, "detect") and callable(spec.detect):
            return spec
        raise DetectorError(f"a detector must have a detect(image_bgr) method; received "
                            f"{type(spec).__name__}")
    kw = {}
    if score_threshold is not None:
        kw["score_threshold"] = float(score_threshold)
    if nms_iou is not None:
        kw["nms_iou"] = float(nms_iou)
    text = "none" if spec is None else os.fspath(spec)
    key = text.lower()
    one_thread = {"threads": threads} if threads else {}  # else the class's default, 1
    if key in ("default", "ssd", "ssd-mobilenet", "ssd_mobilenet_v2"):
        return SSDPersonOnnxDetector(**one_thread, device=device, **kw)
    if key in ("yolox", "yolox-nano", "yolox_nano"):
        return YOLOXOnnxDetector(**one_thread, device=device, **kw)
    if key in ("ssd-cv2", "ssd_cv2"):
        return SSDMobileNetDetector(**kw)
    if key in ("none", "whole-image", "whole_image", "full"):
        return WholeImage()
    if key.endswith(".onnx"):
        probe = _onnx_session(Path(text), 1, "ONNX detector")
        if is_yolox_layout(probe.get_inputs()[0].shape, probe.get_outputs()[0].shape):
            return YOLOXOnnxDetector(text, threads=threads, device=device, **kw)
        if [o.name for o in probe.get_outputs()] == ["boxes", "scores"]:
            return SSDPersonOnnxDetector(text, threads=threads, device=device, **kw)
        return YOLOOnnxDetector(text, threads=threads, device=device, **kw)
    if key.endswith(".pt"):
        return UltralyticsDetector(text, **kw)
    raise DetectorError(f"unknown detector {text!r}; use {DETECTOR_CHOICES}, or an object with "
                        "a detect(image_bgr) method")
