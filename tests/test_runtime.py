"""Runtime pipeline: flip-test exactness, real photos through a real ONNX pose network, the
TFLite path and the detectors. The model registry, cards and the result type:
test_runtime_models.py."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _runtime_helpers import (
    BUS_BOXES,
    REPO,
    export_random_model,
    make_constant_output_model,
    sample,
)
from _training_helpers import require_data

from evopose_sdk import PoseEstimator, PoseResult
from evopose_sdk.card import ModelCard, card_path_for
from evopose_sdk.detectors import (
    SSDMobileNetDetector,
    StaticBoxes,
    WholeImage,
    YOLOOnnxDetector,
    make_detector,
)
from evopose_sdk.errors import DetectorError
from evopose_sdk.registry import resolve_model

# ---------------------------------------------------------------------------------------
# fixtures (pose_onnx and mirror_models: conftest.py)


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported_tflite")
    files = export_random_model(out, "XS", ("onnx", "tflite-fp32", "tflite-int8"))
    assert any(k.startswith("tflite") for k in files), f"no TFLite files exported: {files}"
    return files


@pytest.fixture(scope="session")
def ssd() -> SSDMobileNetDetector:
    return SSDMobileNetDetector()


# ---------------------------------------------------------------------------------------
# flip test


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("decode", ["dark", "argmax"])
def test_flip_test_is_exact_on_a_mirror_symmetric_model(mirror_models, stride, decode) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    path = mirror_models[(stride, True)]
    with PoseEstimator(path, detector="whole-image", flip_test=False, decode=decode) as plain, \
            PoseEstimator(path, detector="whole-image", flip_test=True, decode=decode) as flip:
        a = plain.estimate_boxes(image, BUS_BOXES)
        b = flip.estimate_boxes(image, BUS_BOXES)
    assert len(a) == len(b) == len(BUS_BOXES)
    # The keypoints are informative (not all in one place) ...
    assert np.ptp(a.keypoints_xy[..., 0]) > 50 and np.ptp(a.keypoints_xy[..., 1]) > 50
    # ... and flipping the crop, running, flipping back and averaging changes nothing.
    np.testing.assert_allclose(b.keypoints_xy, a.keypoints_xy, atol=1e-3)
    np.testing.assert_allclose(b.keypoints[..., 2], a.keypoints[..., 2], rtol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_flip_test_changes_an_asymmetric_model(mirror_models, stride) -> None:
    """Control: without mirrored masks the flip-averaged keypoints move (test is sensitive)."""
    image = cv2.imread(str(sample("bus.jpg")))
    path = mirror_models[(stride, False)]
    with PoseEstimator(path, detector="whole-image", flip_test=False) as plain, \
            PoseEstimator(path, detector="whole-image", flip_test=True) as flip:
        a = plain.estimate_boxes(image, BUS_BOXES[:2])
        b = flip.estimate_boxes(image, BUS_BOXES[:2])
    moved = np.linalg.norm(b.keypoints_xy - a.keypoints_xy, axis=-1)
    assert moved.max() > 5.0


# ---------------------------------------------------------------------------------------
# full pipeline on real photos with a real exported pose network


def _check_people(result: PoseResult, boxes: np.ndarray, image_hw: tuple[int, int],
                  padding: float = 1.25, aspect: float = 0.75) -> None:
    h, w = image_hw
    assert len(result) == len(boxes), "every detected person gets a pose"
    assert result.keypoints.shape == (len(boxes), 17, 3)
    assert np.all(np.isfinite(result.keypoints))
    b = result.boxes_xyxy
    assert np.all(b[:, [0, 2]] >= 0) and np.all(b[:, [0, 2]] <= w)
    assert np.all(b[:, [1, 3]] >= 0) and np.all(b[:, [1, 3]] <= h)
    # The same boxes as the detector (OKS-NMS may reorder them).
    for box in boxes:
        assert np.abs(b - box).max(axis=1).min() < 1e-3
    # Keypoints lie inside the padded crop around their box.
    for box, kp in zip(b, result.keypoints_xy, strict=True):
        bw, bh = box[2] - box[0], box[3] - box[1]
        cw = max(bw, bh * aspect) * padding
        ch = max(bh, bw / aspect) * padding
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        assert np.all(np.abs(kp[:, 0] - cx) <= cw / 2 + 1)
        assert np.all(np.abs(kp[:, 1] - cy) <= ch / 2 + 1)
    assert set(result.speed_ms) >= {"detect", "preprocess", "pose", "postprocess"}


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_pipeline_on_real_photos_finds_the_detected_people(pose_onnx, ssd, name) -> None:
    image = cv2.imread(str(sample(name)))
    boxes, _ = ssd.detect(image)
    assert len(boxes) >= 2
    with PoseEstimator(pose_onnx, detector=ssd) as est:
        result = est(image)
        from_path = est(sample(name))
    _check_people(result, boxes, image.shape[:2])
    np.testing.assert_allclose(from_path.keypoints, result.keypoints, atol=1e-4)


def test_pipeline_on_shared_data_images(pose_onnx, ssd) -> None:
    ann = require_data("coco128") / "coco128" / "annotations.json"
    data = json.loads(ann.read_text())
    images = [im for im in data["images"] if im.get("split") == "dev_val"][:4]
    with PoseEstimator(pose_onnx, detector=ssd, flip_test=False) as est:
        for im in images:
            image = cv2.imread(str(ann.parent / "images" / im["file_name"]))
            boxes, _ = ssd.detect(image)
            _check_people(est(image), boxes, image.shape[:2])


def test_batched_crops_match_one_by_one(pose_onnx) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    with PoseEstimator(pose_onnx, detector="whole-image") as batched, \
            PoseEstimator(pose_onnx, detector="whole-image", max_batch=1) as single:
        a = batched.estimate_boxes(image, BUS_BOXES)
        b = single.estimate_boxes(image, BUS_BOXES)
    np.testing.assert_allclose(a.keypoints, b.keypoints, atol=1e-3)


def test_runtime_imports_no_tensorflow_keras_or_torch(mirror_models) -> None:
    bus = sample("bus.jpg")
    code = (
        "import sys, evopose_sdk\n"
        "cheap = not any(m in sys.modules for m in ('onnxruntime', 'cv2'))\n"
        f"r = evopose_sdk.PoseEstimator(r'{mirror_models[(2, True)]}')(r'{bus}')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'torch', 'tf2onnx', 'jax', 'tf_keras'))\n"
        "print(len(r), cheap, bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    n, cheap, bad = out.stdout.strip().split(" ", 2)
    assert int(n) >= 2
    assert cheap == "True", "import evopose_sdk must not load onnxruntime/OpenCV"
    assert bad == "[]"


# ---------------------------------------------------------------------------------------
# TFLite path


@pytest.mark.slow
def test_tflite_fp32_and_int8_run_like_onnx(tflite_models) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    with PoseEstimator(tflite_models["onnx"], detector="whole-image") as ref:
        want = ref.estimate_boxes(image, BUS_BOXES)
    assert {"tflite-fp32", "tflite-int8"} <= set(tflite_models)
    for key in ("tflite-fp32", "tflite-int8"):
        card = ModelCard.load(card_path_for(tflite_models[key]))
        assert card.file_format == "tflite" and card.precision == key.split("-")[1]
        with PoseEstimator(tflite_models[key], backend="tflite", detector="whole-image") as est:
            got = est.estimate_boxes(image, BUS_BOXES)
        _check_people(got, BUS_BOXES, image.shape[:2])
        dist = np.linalg.norm(got.keypoints_xy - want.keypoints_xy, axis=-1)
        logging.getLogger(__name__).info("%s vs ONNX: median %.2f px", key, np.median(dist))
        if key == "tflite-fp32":
            assert np.median(dist) < 0.5, f"fp32 TFLite vs ONNX: median {np.median(dist):.2f} px"


def test_tflite_runs_a_batch_in_one_call_like_one_by_one(monkeypatch) -> None:
    from evopose_sdk.backends import TFLiteBackend

    model = resolve_model("evopose2d-s-160", backend="tflite", precision="int8").path
    crops = np.random.default_rng(0).uniform(0, 255, (5, 160, 128, 3)).astype(np.float32)
    be = TFLiteBackend(model)
    one_by_one = np.concatenate([be.run(crops[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(be.run(crops), one_by_one)  # int8: bit-exact
    np.testing.assert_array_equal(be.run(crops[:3]), one_by_one[:3])  # batch size changes
    assert be.run(crops[:0]).shape == (0, *one_by_one.shape[1:])
    # a graph that refuses another batch: crops run one by one from then on
    fallback = TFLiteBackend(model)

    def refuse(*args, **kwargs):
        raise RuntimeError("fixed batch")

    monkeypatch.setattr(fallback.interpreter, "resize_tensor_input", refuse)
    np.testing.assert_array_equal(fallback.run(crops), one_by_one)
    assert not fallback._batched


# ---------------------------------------------------------------------------------------
# detectors


def test_ssd_detector_finds_people_in_bus(ssd) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    boxes, scores = ssd.detect(image)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert len(boxes) >= 3 and scores.max() > 0.9
    assert np.all(np.diff(scores) <= 0)
    assert np.all((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    assert np.all(boxes[:, 2] <= image.shape[1]) and np.all(boxes[:, 3] <= image.shape[0])
    strict = SSDMobileNetDetector(score_threshold=0.9)
    assert 1 <= len(strict.detect(image)[0]) < len(boxes)


def _letterbox_params(h: int, w: int, size: int = 640) -> tuple[float, float, float]:
    r = min(size / h, size / w)
    return r, (size - round(w * r)) / 2, (size - round(h * r)) / 2


def test_yolo_onnx_raw_head_is_decoded_filtered_and_nms(tmp_path) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    h, w = image.shape[:2]
    r, left, top = _letterbox_params(h, w)
    want = np.array([[52, 392, 229, 900], [678, 363, 810, 882]], np.float32)
    lb = want * r + np.array([left, top, left, top], np.float32)
    rows = []

    def row(box, cls, score):
        v = np.zeros(84, np.float32)
        v[:4] = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]]
        v[4 + cls] = score
        return v

    rows += [row(lb[0], 0, 0.9), row(lb[0] + 2, 0, 0.8)]  # duplicate -> NMS
    rows += [row(lb[1], 0, 0.6), row(lb[1], 2, 0.95)]      # a car on top of a person
    rows += [row(lb[0] + 100, 0, 0.1)]                    # below score threshold
    out = np.stack(rows, axis=1)[None]                    # (1, 84, 5)
    path = make_constant_output_model(tmp_path / "yolo_raw.onnx", [1, 3, 640, 640], out)
    det = make_detector(path)
    assert isinstance(det, YOLOOnnxDetector)
    boxes, scores = det.detect(image)
    np.testing.assert_allclose(scores, [0.9, 0.6], atol=1e-6)
    np.testing.assert_allclose(boxes, want, atol=0.6)
    assert len(YOLOOnnxDetector(path, score_threshold=0.05, nms_iou=0.99).detect(image)[0]) == 4


def test_yolo_onnx_with_embedded_nms(tmp_path) -> None:
    image = cv2.imread(str(sample("zidane.jpg")))
    h, w = image.shape[:2]
    r, left, top = _letterbox_params(h, w)
    want = np.array([[736, 54, 1145, 699]], np.float32)
    lb = want[0] * r + np.array([left, top, left, top])
    out = np.zeros((1, 300, 6), np.float32)
    out[0, 0] = [*lb, 0.88, 0]
    out[0, 1] = [*lb, 0.70, 27]  # a tie, not a person
    path = make_constant_output_model(tmp_path / "yolo_nms.onnx", [1, 3, 640, 640], out)
    boxes, scores = YOLOOnnxDetector(path).detect(image)
    np.testing.assert_allclose(scores, [0.88], atol=1e-6)
    np.testing.assert_allclose(boxes, want, atol=0.6)


def test_ultralytics_detector_when_installed() -> None:
    pytest.importorskip("ultralytics", reason="ultralytics not installed (optional)")
    weights = os.environ.get("EVOPOSE_TEST_YOLO_PT")
    if not weights or not Path(weights).is_file():
        pytest.skip("set EVOPOSE_TEST_YOLO_PT to a local YOLO .pt file (no downloads in tests)")
    boxes, scores = make_detector(weights).detect(cv2.imread(str(sample("bus.jpg"))))
    assert len(boxes) >= 3


def test_static_and_whole_image_detectors() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    boxes, scores = WholeImage().detect(image)
    np.testing.assert_array_equal(boxes, [[0, 0, 200, 100]])
    boxes, scores = StaticBoxes([[-10, 10, 50, 150]], [0.5]).detect(image)
    np.testing.assert_array_equal(boxes, [[0, 10, 50, 100]])
    np.testing.assert_array_equal(scores, [0.5])
    assert isinstance(make_detector("none"), WholeImage)
    custom = StaticBoxes([[0, 0, 10, 10]])
    assert make_detector(custom) is custom
    with pytest.raises(DetectorError, match="unknown detector"):
        make_detector("yolo-magic")
