"""The model registry and model cards, estimator options and box order, and the result type
(indexing, exports, drawing)."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from _runtime_helpers import BUS_BOXES, sample

from evopose_sdk import PoseEstimator, PoseResult
from evopose_sdk.card import ONNX_METADATA_KEY, ModelCard, card_path_for
from evopose_sdk.errors import ModelError
from evopose_sdk.registry import available_models, resolve_model

# ---------------------------------------------------------------------------------------
# registry, cards, estimator options


def test_registry_finds_models_by_name(mirror_models, tmp_path, monkeypatch, caplog) -> None:
    import shutil

    src = mirror_models[(4, True)]
    shutil.copy(src, tmp_path / "mirror.onnx")
    shutil.copy(card_path_for(src), card_path_for(tmp_path / "mirror.onnx"))
    monkeypatch.setenv("EVOPOSE_MODELS_DIR", str(tmp_path))
    assert [m.card.name for m in available_models()] == ["mirror-s4"]
    assert resolve_model("MIRROR-S4").path == tmp_path / "mirror.onnx"
    with pytest.raises(ModelError, match=r"Did you mean 'mirror-s4'.*Available \(model name \+ "
                       r"precision, or the file name\): mirror-s4 fp32 = mirror\.onnx\."):
        resolve_model("mirror-s3")
    assert resolve_model("mirror").path == tmp_path / "mirror.onnx"  # by file stem
    with caplog.at_level(logging.WARNING, logger="evopose_sdk.estimator"):
        est = PoseEstimator("mirror-s4", detector="whole-image")
    assert est.card.name == "mirror-s4"
    assert "UNTRAINED" in caplog.text


def test_every_shipped_file_by_file_name_or_name_and_precision(caplog) -> None:
    shipped = available_models()
    assert len(repr(shipped)) < 150 * len(shipped)  # not every card in full
    assert "file='evopose2d-s_int8.tflite'" in repr(shipped)
    for m in shipped:
        for name in (m.path.stem, m.path.name, m.path.stem.upper()):
            assert resolve_model(name).path == m.path, name
        assert resolve_model(m.card.name, precision=m.card.precision).path == m.path
        if m.path.stem != m.card.name:  # a file name asks for exactly that file
            with pytest.raises(ModelError, match="does not fit precision"):
                resolve_model(m.path.stem, precision="fp32")
    # no precision and --backend tflite: the fp16 file, said in a warning, never silently
    with caplog.at_level(logging.WARNING, logger="evopose_sdk.registry"):
        picked = resolve_model("evopose2d-s", backend="tflite")
    assert picked.path.name == "evopose2d-s_fp16.tflite"
    assert "no fp32 tflite file; using evopose2d-s_fp16.tflite" in caplog.text
    with pytest.raises(ModelError, match=r"no tflite fp32 file of model 'evopose2d-s'.*"
                                         r"evopose2d-s int8 = evopose2d-s_int8\.tflite"):
        resolve_model("evopose2d-s", backend="tflite", precision="fp32")


def test_onnx_without_sidecar_card_uses_embedded_card(mirror_models, tmp_path) -> None:
    import onnx

    model = onnx.load(str(mirror_models[(2, True)]))
    card = ModelCard.load(card_path_for(mirror_models[(2, True)]))
    card.sha256 = ""
    meta = model.metadata_props.add()
    meta.key, meta.value = ONNX_METADATA_KEY, card.to_json()
    path = tmp_path / "embedded.onnx"
    onnx.save(model, str(path))
    resolved = resolve_model(path)
    assert resolved.card.heatmap_stride == 2 and resolved.card.name == "mirror-s2"


def test_estimator_options_are_checked(mirror_models) -> None:
    path = mirror_models[(4, True)]
    with pytest.raises(TypeError, match="did you mean 'flip_test'"):
        PoseEstimator(path, flip_tset=False)
    with pytest.raises(ValueError, match="decode"):
        PoseEstimator(path, decode="soft")


def test_estimate_boxes_keeps_box_order_and_stream_delegates(mirror_models) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    with PoseEstimator(mirror_models[(4, True)], detector="whole-image") as est:
        res = est.estimate_boxes(image, BUS_BOXES[::-1], box_scores=[0.1, 0.2, 0.3, 0.4])
        np.testing.assert_array_equal(res.boxes_xyxy, BUS_BOXES[::-1])
        np.testing.assert_allclose(res.box_scores, [0.1, 0.2, 0.3, 0.4])
        video = sample("demo.mp4")
        frames = list(est.stream(video, max_frames=2))
    assert len(frames) == 2 and isinstance(frames[0][1], PoseResult)


# ---------------------------------------------------------------------------------------
# result type


def _result(n: int = 3) -> PoseResult:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 100, (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))], -1)
    boxes = np.tile(np.array([[10, 20, 60, 90]], np.float32), (n, 1)) + np.arange(n)[:, None]
    return PoseResult(boxes, np.linspace(1, 0.5, n), kp, np.linspace(0.9, 0.3, n),
                      image_hw=(120, 160), speed_ms={"pose": 1.5})


def test_result_indexing_and_exports() -> None:
    r = _result()
    assert len(r) == 3 and r.track_ids.tolist() == [-1, -1, -1]
    assert len(r[r.scores > 0.5]) == 2 and len(r[1:]) == 2 and len(r[[2, 0]]) == 2
    one = r[-1]  # an int drops the person axis; a slice keeps it
    assert one.keypoints.shape == (17, 3) and one.box_xyxy.shape == (4,)
    assert one.score == r.scores[-1] and one.track_id == -1
    assert len(r[-1:]) == 1 and r[-1:].keypoints.shape == (1, 17, 3)
    assert r.keypoints_xy.shape == (3, 17, 2)
    coco = r.to_coco(image_id=7)
    assert coco[0]["image_id"] == 7 and coco[0]["category_id"] == 1
    assert len(coco[0]["keypoints"]) == 51 and coco[0]["bbox"] == [10.0, 20.0, 50.0, 70.0]
    d = json.loads(json.dumps(r.to_dict()))
    assert len(d["people"]) == 3 and len(d["people"][0]["keypoints"]) == 17
    empty = PoseResult.empty((10, 20))
    assert len(empty) == 0 and empty.to_coco() == [] and empty.keypoints.shape == (0, 17, 3)
    with pytest.raises(IndexError):
        r[5]
    with pytest.raises(ValueError, match=r"keypoints \(3, 5, 3\)"):
        PoseResult(r.boxes_xyxy, r.box_scores, np.zeros((3, 5, 3)), r.scores)


def test_result_draw_returns_an_annotated_copy(pose_onnx) -> None:
    image = cv2.imread(str(sample("zidane.jpg")))
    before = image.copy()
    with PoseEstimator(pose_onnx) as est:
        result = est(image)
    drawn = result.draw(image, keypoint_threshold=0.0)
    np.testing.assert_array_equal(image, before)
    assert drawn.shape == image.shape and (drawn != image).any(axis=2).mean() > 0.001
    with pytest.raises(ValueError, match="uint8"):
        result.draw(image.astype(np.float32))


def test_draw_sizes_the_dots_to_each_person() -> None:
    """vtest.avi's pedestrians (~80 px tall in a 768x576 frame) get dots about a third the area of
    the image-size default, so they do not hide the limbs; the tallest person in zidane.jpg
    keeps the default."""

    def dot_area(result: PoseResult, image: np.ndarray, **kwargs) -> int:
        one = result[[0]]
        one.keypoints[0, :, 2] = 0.0
        one.keypoints[0, 0, 2] = 1.0  # draw the nose alone
        drawn = one.draw(image, draw_boxes=False, **kwargs)
        return int((drawn != image).any(axis=2).sum())

    cap = cv2.VideoCapture(str(sample("vtest.avi")))
    ok, frame = cap.read()
    cap.release()
    assert ok
    photo = cv2.imread(str(sample("zidane.jpg")))
    with PoseEstimator() as est:
        street, portrait = est(frame), est(photo)
    heights = street.boxes_xyxy[:, 3] - street.boxes_xyxy[:, 1]
    assert len(street) >= 3 and heights.max() < 160
    smallest = street[[int(np.argmin(heights))]]  # a list index keeps the person axis
    image_default = 4  # 3 px per 640 px of the longer side
    assert 2 * dot_area(smallest, frame) < dot_area(smallest, frame, radius=image_default)
    tallest = portrait[[int(np.argmax(portrait.boxes_xyxy[:, 3] - portrait.boxes_xyxy[:, 1]))]]
    assert dot_area(tallest, photo) == dot_area(tallest, photo, radius=6)
