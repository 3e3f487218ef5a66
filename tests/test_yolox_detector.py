"""YOLOX-nano (``detector="yolox"``) from models/detectors/, on real photos.

All on the shipped ONNX file through ONNX Runtime, the sample photos and the SSD it replaced.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from _video_helpers import sample

from evopose_sdk.card import sha256_file
from evopose_sdk.detectors import (
    DETECTOR_NAMES,
    SSDPersonOnnxDetector,
    YOLOOnnxDetector,
    YOLOXOnnxDetector,
    default_detector_path,
    fuse_views,
    is_yolox_layout,
    make_detector,
    yolox_cells,
    yolox_detector_path,
)
from evopose_sdk.errors import DetectorError
from evopose_sdk.tracking import box_iou

#: the people of the sample photos (boxes read off the images; x1, y1, x2, y2)
BUS_MEN = np.array([[50, 395, 214, 898], [219, 403, 347, 855], [686, 451, 810, 874]], np.float32)
ZIDANE_MEN = np.array([[150, 200, 680, 712], [712, 40, 1151, 706]], np.float32)


@pytest.fixture(scope="module")
def yolox() -> YOLOXOnnxDetector:
    return YOLOXOnnxDetector(threads=2)


def test_shipped_file_is_the_verified_source_with_card_and_licence() -> None:
    path = yolox_detector_path()
    assert path.name == "yolox_nano.onnx"
    card = json.loads(path.with_name(path.name + ".json").read_text())
    # shipped unmodified: the sha256 of the file in hamacom2004jp/iinfer at c7f9a3c5
    assert sha256_file(path) == card["sha256"] == card["source"]["sha256"]
    assert card["source"]["repository"] == "hamacom2004jp/iinfer"
    assert card["source"]["commit"].startswith("c7f9a3c5")
    assert card["checks"]["layout"] == {"input": [1, 3, 416, 416], "output": [1, 3549, 85],
                                        "classes": 80, "cells_at_416": 3549}
    assert abs(card["checks"]["params"] / 1e6 - 0.91) < 0.01  # YOLOX's published 0.91 M
    licence = path.with_name("yolox_nano.LICENSE.txt").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence and "Megvii" in licence
    assert path.stat().st_size < 4 * 2**20


def test_selected_by_name_beside_the_default_ssd(tmp_path) -> None:
    assert isinstance(make_detector("yolox"), YOLOXOnnxDetector)
    assert isinstance(make_detector("yolox-nano", score_threshold=0.5), YOLOXOnnxDetector)
    assert isinstance(make_detector("default"), SSDPersonOnnxDetector)
    assert {"yolox", "ssd"} <= set(DETECTOR_NAMES)
    # a YOLOX export given as a path is recognised by its output, not taken for ultralytics'
    copy = tmp_path / "my_yolox.onnx"
    copy.write_bytes(yolox_detector_path().read_bytes())
    assert isinstance(make_detector(str(copy)), YOLOXOnnxDetector)


def test_layout_check_tells_yolox_from_ultralytics() -> None:
    assert yolox_cells((416, 416)) == 3549 and yolox_cells((640, 640)) == 8400
    assert is_yolox_layout([1, 3, 416, 416], [1, 3549, 85])
    assert is_yolox_layout([1, 3, "h", "w"], [1, "n", 85])
    assert not is_yolox_layout([1, 3, 640, 640], [1, 84, 8400])  # ultralytics raw head
    assert not is_yolox_layout([1, 3, 640, 640], [1, 300, 6])  # ultralytics with NMS
    with pytest.raises(DetectorError, match="not a YOLOX detector"):
        YOLOXOnnxDetector(default_detector_path())


@pytest.mark.parametrize("photo, men", [("bus.jpg", BUS_MEN), ("zidane.jpg", ZIDANE_MEN)])
def test_finds_each_man_in_the_sample_photos_with_one_box_each(yolox, photo, men) -> None:
    image = cv2.imread(str(sample(photo)))
    boxes, scores = yolox.detect(image)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert np.all(np.diff(scores) <= 0) and scores.min() >= yolox.score_threshold
    iou = box_iou(men, boxes)
    assert iou.max(axis=1).min() > 0.75, iou  # every man has his own box
    assert len(set(iou.argmax(axis=1).tolist())) == len(men)
    assert len(boxes) == len(men)  # and nothing else (the leopard coat, half out, scores ~0.2)


def test_zidane_one_box_per_man_where_ssd_gave_one_box_for_both(yolox) -> None:
    """SSD's best box spans both men (x 93-1106) and no threshold or NMS
    setting fixes it: its best box on Zidane alone scores 0.09. YOLOX gives two boxes."""
    image = cv2.imread(str(sample("zidane.jpg")))
    ssd = SSDPersonOnnxDetector(score_threshold=0.3)
    b_ssd, _ = ssd.detect(image)
    both = (b_ssd[:, 0] < 200) & (b_ssd[:, 2] > 1000)
    assert both[0]  # SSD's top box spans the two men
    b, _ = yolox.detect(image)
    assert not ((b[:, 0] < 200) & (b[:, 2] > 1000)).any()
    assert box_iou(b[:1], b[1:2])[0, 0] < 0.1


def test_mirror_view_is_averaged_and_can_be_switched_off(yolox) -> None:
    image = cv2.imread(str(sample("bus.jpg")))
    one = yolox.detect(image, flip=False)
    two = yolox.detect(image)
    mirrored = yolox.detect(np.ascontiguousarray(image[:, ::-1]))
    # the fused boxes are symmetric: the mirror image gives the mirrored boxes and scores
    w = image.shape[1]
    back = np.stack([w - mirrored[0][:, 2], mirrored[0][:, 1], w - mirrored[0][:, 0],
                     mirrored[0][:, 3]], axis=1)
    assert len(back) == len(two[0])
    iou = box_iou(two[0], back)
    assert iou.max(axis=1).min() > 0.99
    np.testing.assert_allclose(np.sort(mirrored[1]), np.sort(two[1]), atol=1e-5)
    assert len(one[0]) >= 2 and not np.allclose(one[1][:2], two[1][:2])
    # fusing a view with itself changes nothing
    view = yolox.view(image, 0.3)
    fused = fuse_views(view, view)
    np.testing.assert_allclose(np.sort(fused[1]), np.sort(view[1]), rtol=1e-6)


def test_empty_frame_and_bad_input(yolox) -> None:
    boxes, scores = yolox.detect(np.zeros((240, 320, 3), np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    with pytest.raises(Exception, match="uint8 BGR"):
        yolox.detect(np.zeros((240, 320), np.uint8))
    with pytest.raises(DetectorError, match="multiple of 32"):
        YOLOXOnnxDetector(input_size=500)
    with pytest.raises(DetectorError, match="fixed 416x416"):
        YOLOXOnnxDetector(input_size=480)


def test_yolo_onnx_class_is_not_used_for_yolox_files() -> None:
    """The ultralytics parser would read YOLOX's (1, 3549, 85) as (1, 4 + C, N) garbage."""
    with pytest.raises(DetectorError, match="YOLOX export"):
        YOLOOnnxDetector(yolox_detector_path())
