"""evopose-sdk: EvoPose2D top-down 2D human pose estimation.

``from evopose_sdk import PoseEstimator``

The public names below are imported lazily, so ``import evopose_sdk`` stays cheap (no
onnxruntime or OpenCV until first use).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "PoseEstimator": "evopose_sdk.estimator",
    "PoseEstimatorOptions": "evopose_sdk.options",
    "PoseResult": "evopose_sdk.result",
    "Person": "evopose_sdk.result",
    "Detector": "evopose_sdk.detectors",
    "SSDMobileNetDetector": "evopose_sdk.detectors",
    "SSDPersonOnnxDetector": "evopose_sdk.detectors",
    "YOLOXOnnxDetector": "evopose_sdk.detectors",
    "YOLOOnnxDetector": "evopose_sdk.detectors",
    "UltralyticsDetector": "evopose_sdk.detectors",
    "StaticBoxes": "evopose_sdk.detectors",
    "WholeImage": "evopose_sdk.detectors",
    "make_detector": "evopose_sdk.detectors",
    "ModelCard": "evopose_sdk.card",
    "resolve_model": "evopose_sdk.registry",
    "available_models": "evopose_sdk.registry",
    "load_image": "evopose_sdk.io",
    "EvoPoseError": "evopose_sdk.errors",
    "InputError": "evopose_sdk.errors",
    "ModelError": "evopose_sdk.errors",
    "DetectorError": "evopose_sdk.errors",
    "VideoError": "evopose_sdk.errors",
}

__all__ = [
    "__version__",
    "PoseEstimator",
    "PoseEstimatorOptions",
    "PoseResult",
    "Person",
    "Detector",
    "SSDMobileNetDetector",
    "SSDPersonOnnxDetector",
    "YOLOXOnnxDetector",
    "YOLOOnnxDetector",
    "UltralyticsDetector",
    "StaticBoxes",
    "WholeImage",
    "make_detector",
    "ModelCard",
    "resolve_model",
    "available_models",
    "load_image",
    "EvoPoseError",
    "InputError",
    "ModelError",
    "DetectorError",
    "VideoError",
]

if TYPE_CHECKING:  # pragma: no cover
    from evopose_sdk.card import ModelCard
    from evopose_sdk.detectors import (
        Detector,
        SSDMobileNetDetector,
        SSDPersonOnnxDetector,
        StaticBoxes,
        UltralyticsDetector,
        WholeImage,
        YOLOOnnxDetector,
        YOLOXOnnxDetector,
        make_detector,
    )
    from evopose_sdk.errors import DetectorError, EvoPoseError, InputError, ModelError, VideoError
    from evopose_sdk.estimator import PoseEstimator
    from evopose_sdk.io import load_image
    from evopose_sdk.options import PoseEstimatorOptions
    from evopose_sdk.registry import available_models, resolve_model
    from evopose_sdk.result import Person, PoseResult


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'evopose_sdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
