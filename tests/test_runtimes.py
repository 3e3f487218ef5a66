"""Every shipped ONNX file in the common runtimes: ONNX Runtime (the reference), OpenCV DNN
(``cv2.dnn``, a base dependency) and OpenVINO (extra ``[openvino]``, at f32 inference precision;
skipped with the install command when it is missing) load it and give the same outputs on
real photos.

Pose models: person crops of ``.samples/bus.jpg`` and ``zidane.jpg`` (boxes from the shipped
detector, crops by the runtime's own warp), at batch 1 and all crops as one batch; heatmaps
within :data:`HEATMAP_TOL` of ONNX Runtime's (their range is about [-0.06, 1.07]) and decoded
keypoints within :data:`KEYPOINT_TOL_PX`. Detectors (SSD and YOLOX, each as
:func:`~evopose_sdk.detectors.make_detector` reads its file): the two photos as the detector
feeds them; SSD's normalised boxes and every score within :data:`DETECTOR_TOL`, YOLOX's raw box
terms (cell offsets, log sizes) within :data:`YOLOX_BOX_TOL`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from _runtime_helpers import REPO, sample

from evopose_sdk.backends import make_backend
from evopose_sdk.card import ModelCard, card_path_for
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.detectors import (
    SSDPersonOnnxDetector,
    YOLOXOnnxDetector,
    make_detector,
)

onnx = pytest.importorskip("onnx", reason="the graph checks need onnx (extra [export])")

from evopose_sdk.export.crops import crops_from_boxes  # noqa: E402
from evopose_sdk.export.portable import (  # noqa: E402
    CARD_NOTE,
    asymmetric_conv_transposes,
    symmetric_conv_transpose,
)

POSE_FILES = sorted((REPO / "models").glob("*.onnx"))
DETECTOR_FILES = sorted((REPO / "models" / "detectors").glob("*.onnx"))
PHOTOS = ("bus.jpg", "zidane.jpg")
#: Absolute heatmap tolerance (fp32; measured: OpenCV <= 1.2e-6, OpenVINO f32 <= 1.7e-5).
HEATMAP_TOL = 1e-3
#: Decoded keypoints (DARK), crop pixels.
KEYPOINT_TOL_PX = 0.05
#: Detector scores (0-1) and normalised box coordinates (measured: <= 4e-6).
DETECTOR_TOL = 1e-4
#: YOLOX's raw box terms, cell offsets and log sizes in stride units (measured: <= 2.1e-4;
#: 1e-3 is at most 0.03 px at stride 32).
YOLOX_BOX_TOL = 1e-3
RUNTIMES = ("opencv", "openvino")


def _openvino():
    return pytest.importorskip(
        "openvino", reason="OpenVINO not installed: pip install 'evopose-sdk[openvino]'")


def _opencv_run(path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    net = cv2.dnn.readNetFromONNX(str(path))
    for name, value in feeds.items():
        net.setInput(value, name)
    return list(net.forward(outputs))


def _openvino_run(path: Path, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    ov = _openvino()
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(feeds)
    return [np.array(result[name]) for name in outputs]


@pytest.fixture(scope="module")
def photo_boxes() -> list[tuple[Path, np.ndarray]]:
    """The sample photos with the people the shipped detector finds in them."""
    det = SSDPersonOnnxDetector(threads=2)
    items = [(sample(name), det.detect(cv2.imread(str(sample(name))))[0]) for name in PHOTOS]
    assert sum(len(b) for _, b in items) >= 4
    return items


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", POSE_FILES, ids=lambda p: p.name)
def test_pose_model_runs_alike(path, runtime, photo_boxes):
    card = ModelCard.load(card_path_for(path))
    n = sum(len(b) for _, b in photo_boxes)
    crops = crops_from_boxes(photo_boxes, tuple(card.input_size), n).images
    ref = make_backend(path, "onnxruntime", threads=2).run(crops)
    run = _openvino_run if runtime == "openvino" else _opencv_run
    got = [run(path, {card.input_name: x}, [card.output_name])[0] for x in (crops[:1], crops)]
    codec = HeatmapCodec(tuple(card.input_size), card.heatmap_stride)
    ref_kp, _ = codec.decode(ref)
    for hm in got:
        assert hm.shape == ref[:len(hm)].shape
        err = float(np.abs(hm - ref[:len(hm)]).max())
        assert err <= HEATMAP_TOL, f"{runtime} heatmaps differ from ONNX Runtime's by {err:.3g}"
        kp, _ = codec.decode(hm)
        assert np.abs(kp - ref_kp[:len(hm)]).max() <= KEYPOINT_TOL_PX


def _detector_feed(path: Path):
    """The detector :func:`make_detector` builds for the file (SSD or YOLOX), a function giving
    its network input for a photo, and one splitting the raw outputs into named parts, each with
    its tolerance."""
    det = make_detector(str(path), threads=2)
    if isinstance(det, YOLOXOnnxDetector):
        def parts(out):
            return {"box terms": (out[0][..., :4], YOLOX_BOX_TOL),
                    "probabilities": (out[0][..., 4:], DETECTOR_TOL),
                    "person scores": (out[0][..., 4] * out[0][..., 5], DETECTOR_TOL)}
        return det, lambda img: det.input_blob(img)[0], parts
    assert isinstance(det, SSDPersonOnnxDetector)
    return det, det.input_blob, lambda out: {"boxes": (out[0], DETECTOR_TOL),
                                             "person scores": (out[1], DETECTOR_TOL)}


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", DETECTOR_FILES, ids=lambda p: p.name)
def test_detector_runs_alike(path, runtime):
    det, feed, parts = _detector_feed(path)
    outputs = [o.name for o in det.session.get_outputs()]
    run = _openvino_run if runtime == "openvino" else _opencv_run
    for name in PHOTOS:
        blob = feed(cv2.imread(str(sample(name))))
        ref = parts(det.session.run(outputs, {det.input_name: blob}))
        got = parts(run(path, {det.input_name: blob}, outputs))
        assert (ref["person scores"][0] >= det.score_threshold).any()
        for what, (a, tol) in ref.items():
            b = got[what][0]
            assert b.shape == a.shape
            err = float(np.abs(b - a).max())
            assert err <= tol, f"{runtime} {what} on {name} differ by {err:.3g}"


@pytest.mark.parametrize("path", POSE_FILES, ids=lambda p: p.name)
def test_shipped_pose_files_have_symmetric_conv_transposes(path):
    model = onnx.load(str(path))
    assert any(n.op_type == "ConvTranspose" for n in model.graph.node)
    assert asymmetric_conv_transposes(model) == []
    assert ModelCard.load(card_path_for(path)).recipe["export"]["conv_transpose"] == CARD_NOTE


def _conv_transpose_model(pads: list[int], output_padding: list[int], stride: int, k: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", pads=pads,
                            strides=[stride, stride], kernel_shape=[k, k],
                            output_padding=output_padding)
    graph = helper.make_graph(
        [node], "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 9, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        initializer=[numpy_helper.from_array(rng.normal(size=(4, 3, k, k)).astype(np.float32), "w"),
                     numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("pads,output_padding,stride,k", [
    ([0, 0, 1, 1], [0, 0], 2, 3),   # what tf2onnx writes for Keras' "same" stride-2 3x3
    ([1, 0, 2, 1], [1, 0], 2, 4),   # both axes, larger begin pad on one, output_padding
    ([0, 1, 0, 2], [0, 0], 3, 3),   # only the width asymmetric
])
def test_symmetric_conv_transpose_keeps_outputs(tmp_path, pads, output_padding, stride, k):
    """The rewrite gives ONNX Runtime's outputs unchanged, and OpenCV DNN, which refuses the
    asymmetric node, runs the rewritten one to the same numbers."""
    import onnxruntime as ort

    x = np.random.default_rng(1).normal(size=(2, 4, 9, 7)).astype(np.float32)
    model = _conv_transpose_model(pads, output_padding, stride, k)
    before = tmp_path / "before.onnx"
    onnx.save(model, str(before))
    ref = ort.InferenceSession(str(before)).run(None, {"x": x})[0]
    with pytest.raises(cv2.error, match="asymmetric padding"):
        _opencv_run(before, {"x": x}, ["y"])
    assert symmetric_conv_transpose(model) == ["up"]
    onnx.checker.check_model(model)
    assert asymmetric_conv_transposes(model) == []
    after = tmp_path / "after.onnx"
    onnx.save(model, str(after))
    assert np.array_equal(ort.InferenceSession(str(after)).run(None, {"x": x})[0], ref)
    assert np.abs(_opencv_run(after, {"x": x}, ["y"])[0] - ref).max() <= 1e-5

