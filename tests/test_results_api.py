"""What a pose-library user reaches for: per-person indexing, plot / save / show,
JSON / COCO / supervision export, device choice, clear errors. Shipped model, real photos."""

from __future__ import annotations

import json
import logging
import re

import cv2
import numpy as np
import pytest
from _video_helpers import sample

from evopose_sdk import InputError, Person, PoseEstimator, PoseResult

MODEL = "evopose2d-s-160_int8"  # the fast shipped file: these tests are about the API


@pytest.fixture(scope="module")
def est():
    with PoseEstimator(MODEL, threads=2) as e:
        yield e


@pytest.fixture(scope="module")
def bus():
    return cv2.imread(str(sample("bus.jpg")))


@pytest.fixture(scope="module")
def people(est, bus) -> PoseResult:
    result = est(bus)
    assert len(result) >= 2
    return result


def test_an_int_index_is_one_person_without_the_person_axis(people):
    first = people[0]
    assert isinstance(first, Person)
    assert first.keypoints.shape == (17, 3) and first.keypoints_xy.shape == (17, 2)
    assert first.box_xyxy.shape == (4,) and first.keypoint_scores.shape == (17,)
    np.testing.assert_array_equal(first.keypoints, people.keypoints[0])
    assert first.score == people.scores[0] and first.track_id == -1
    np.testing.assert_array_equal(first.keypoint("left_wrist"), people.keypoints[0, 9])
    assert [p.score for p in people] == people.scores.tolist()  # iteration yields persons
    assert people[-1].score == people.scores[-1]
    assert people[:1].keypoints.shape == (1, 17, 3)  # a slice keeps the axis
    assert "Person(score=" in repr(first)


def test_plot_save_and_json_exports(people, bus, tmp_path):
    drawn = people.plot()
    assert drawn.shape == bus.shape and drawn.dtype == np.uint8
    assert (drawn != bus).any() and (people.image == bus).all()  # a copy, drawn on
    saved = people.save(tmp_path / "sub" / "bus_pose.jpg")
    assert cv2.imread(str(saved)).shape == bus.shape
    people.save(tmp_path / "bus_pose.json")
    assert json.loads((tmp_path / "bus_pose.json").read_text()) == people.to_dict()
    coco = json.loads(people.to_json(coco=True, image_id=3))
    assert coco == people.to_coco(image_id=3) and len(coco) == len(people)
    assert [p for p in tmp_path.rglob("*") if ".tmp" in p.name] == []  # atomic: no leftovers
    with pytest.raises(InputError, match="encodes no '.xyz'"):
        people.save(tmp_path / "bus.xyz")


def test_printed_results_have_no_float32_noise(people):
    """Was: ``to_coco()`` printed ``0.6869999766349792`` (float32 widened to float)."""
    text = repr(people) + repr(people[0]) + json.dumps(people.to_coco()) + \
        json.dumps(people.to_dict())
    long_floats = re.findall(r"\d+\.\d{6,}", text)
    assert long_floats == [], long_floats[:5]


def test_show_without_a_display_says_what_to_do(people, monkeypatch, caplog):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with caplog.at_level(logging.WARNING, logger="evopose_sdk"):
        assert people.show() is False
    assert "no display" in caplog.text and "save(" in caplog.text


def test_video_results_keep_no_frame_and_say_so(est):
    (frame, result), = list(est.stream(sample("demo.mp4"), max_frames=1))
    assert result.image is None
    with pytest.raises(InputError, match="pass the frame"):
        result.plot()
    assert result.plot(frame).shape == frame.shape


def test_supervision_keypoints_export(people, bus):
    sv = pytest.importorskip("supervision", reason="supervision not installed: pip install "
                                                   "'evopose-sdk[supervision]'")
    kp = people.to_supervision()
    assert isinstance(kp, sv.KeyPoints) and len(kp) == len(people)
    np.testing.assert_array_equal(kp.xy, people.keypoints_xy)
    conf = getattr(kp, "keypoint_confidence", None)
    np.testing.assert_array_equal(conf if conf is not None else kp.confidence,
                                  people.keypoint_scores)
    np.testing.assert_array_equal(kp.data["track_id"], people.track_ids)
    drawn = sv.VertexAnnotator(radius=4).annotate(bus.copy(), kp)  # supervision draws it
    assert (drawn != bus).any()


def test_device_falls_back_to_the_cpu_with_a_clear_message(bus, caplog):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the fallback cannot be seen here")
    with caplog.at_level(logging.WARNING, logger="evopose_sdk"):
        gpu = PoseEstimator("evopose2d-s-160", device="cuda", threads=2)
    assert "CUDAExecutionProvider" in caplog.text and "onnxruntime-gpu" in caplog.text
    assert gpu.device == "cpu" and gpu.model_path.suffix == ".onnx"  # a GPU device runs ONNX
    with PoseEstimator("evopose2d-s-160", precision="fp32", threads=2) as cpu:
        np.testing.assert_array_equal(gpu(bus).keypoints, cpu(bus).keypoints)
        assert cpu.device == "cpu"
    gpu.close()
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        PoseEstimator(MODEL, device="tpu")


def test_none_input_names_cv2_imread(est):
    """Was: 'image must be a numpy array or a path; received NoneType'."""
    with pytest.raises(InputError, match="cv2.imread returns None"):
        est(cv2.imread("/nonexistent/photo.jpg"))
    with pytest.raises(InputError, match="a batch of 2 images"):
        est([sample("bus.jpg"), sample("zidane.jpg")], boxes=[[0, 0, 10, 10]])


def test_backend_tflite_picks_the_int8_file(caplog):
    """Was: --backend tflite took fp16, the slowest file (19.5 fps against 35.6 for int8),
    with a warning."""
    from evopose_sdk.cli_args import build_parser, estimator_options

    args = build_parser().parse_args(["x.jpg", "--backend", "tflite"])
    with caplog.at_level(logging.WARNING, logger="evopose_sdk"):
        with PoseEstimator(**estimator_options(args)) as est:
            assert est.model_path.name == "evopose2d-s_int8.tflite"
        with PoseEstimator("evopose2d-s-160", backend="tflite") as est:
            assert est.model_path.name == "evopose2d-s-160_int8.tflite"
    assert "fp16" not in caplog.text
    with PoseEstimator("evopose2d-s", backend="onnxruntime") as est:  # ONNX: the fp32 file
        assert est.model_path.name == "evopose2d-s.onnx"
