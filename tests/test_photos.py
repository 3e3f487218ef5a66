"""Photos are photos: each image of a folder or a list is estimated alone, with
the accurate settings (flip test on); video keeps the fast ones. Shipped model, real photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _video_helpers import REPO, sample

from evopose_sdk import PoseEstimator

MODEL = "evopose2d-s"  # the default model, as a user gets it (int8 where LiteRT is installed)


@pytest.fixture(scope="module")
def est():
    with PoseEstimator(MODEL, threads=2) as e:
        yield e


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """bus.jpg, a copy shifted 25 px right (PNG: the file holds the array exactly), zidane.jpg:
    two nearly identical photos, which a tracker and smoother would tie together."""
    d = tmp_path_factory.mktemp("photos") / "seq"
    d.mkdir()
    shutil.copy(sample("bus.jpg"), d / "a_bus.jpg")
    bus = cv2.imread(str(sample("bus.jpg")))
    shifted = cv2.warpAffine(bus, np.float32([[1, 0, 25], [0, 1, 0]]), bus.shape[1::-1])
    cv2.imwrite(str(d / "b_bus_shifted.png"), shifted)
    shutil.copy(sample("zidane.jpg"), d / "c_zidane.jpg")
    return d


def _same(a, b) -> None:
    """Two PoseResults equal bit for bit (boxes, scores, keypoints, track ids)."""
    assert len(a) == len(b)
    for name in ("boxes_xyxy", "box_scores", "keypoints", "scores", "track_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_each_photo_of_a_folder_equals_the_photo_alone(est, photo_folder):
    """Was: the folder streamed as a video, tracked and smoothed; the shifted bus came out
    up to 20.9 px from its own result, with track ids 1-5."""
    streamed = list(est.stream(photo_folder))
    alone = [est(p) for p in sorted(photo_folder.iterdir())]
    assert len(streamed) == len(alone) == 3 and min(len(a) for a in alone) >= 2
    for (_, s), a in zip(streamed, alone, strict=True):
        _same(s, a)
        assert (s.track_ids == -1).all() and "smooth" not in s.speed_ms


def test_a_list_of_photos_is_a_batch_of_independent_results(est, photo_folder):
    paths = sorted(photo_folder.iterdir())
    images = [cv2.imread(str(p)) for p in paths]
    batch = est(images)
    assert isinstance(batch, list) and len(batch) == 3
    for img, path, r in zip(images, paths, batch, strict=True):
        _same(r, est(img))
        _same(r, est(str(path)))  # a path and its array give the same people
    _same(est([images[2], images[0]])[1], batch[0])  # order and neighbours do not matter
    with_paths = est([str(p) for p in paths])
    for r, b in zip(with_paths, batch, strict=True):
        _same(r, b)


def test_photos_get_the_flip_test_and_video_does_not(est, tmp_path):
    bus = cv2.imread(str(sample("bus.jpg")))
    assert est.flip_for("images") is True and est.flip_for("video") is False
    assert est.flip_for("webcam") is False
    _same(est(bus), est(bus, flip_test=True))
    assert not np.array_equal(est(bus).keypoints, est(bus, flip_test=False).keypoints)
    # a video frame gets no flip test: bus.jpg as a one-frame video through stream() has the
    # keypoints of estimate_detections(frame, flip_test=False) on the detector's boxes
    video = tmp_path / "bus.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, bus.shape[1::-1])
    writer.write(bus)
    writer.release()
    (frame, people), = list(est.stream(video, smoothing=False))
    plain = est.estimate_detections(frame, *est.detect(frame), flip_test=False)
    assert len(people) >= 1
    np.testing.assert_array_equal(people.keypoints, plain.keypoints)
    with PoseEstimator(MODEL, flip_test=False, threads=2) as fast:
        assert fast.flip_for("images") is False
        _same(fast(bus), est(bus, flip_test=False))


def test_cli_on_a_photo_folder_writes_each_photo_alone(est, photo_folder, tmp_path):
    """``evopose-infer seq/``: each JSON line is the photo's own result (flip on, id -1, no
    time stamp), as the API gives it alone."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "evopose_sdk.cli", str(photo_folder),
                           "--model", MODEL, "--threads", "2", "-q", "--output", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "seq_pose.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == sorted(p.name for p in photo_folder.iterdir())
    for r in records:
        assert "time_s" not in r
        alone = est(photo_folder / r["file"]).to_dict()
        assert r["people"] == alone["people"], r["file"]
        assert all(p["track_id"] == -1 for p in r["people"])
    assert sorted(p.name for p in (out / "seq_pose").iterdir()) == \
        sorted(p.name for p in photo_folder.iterdir())
