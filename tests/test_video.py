"""Video sources, the stream generator and the atomic writers, on real video and images."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pytest
from _video_helpers import random_pose_model, sample, ssd_detector, write_frames

from evopose_sdk.background import BackgroundSink
from evopose_sdk.errors import VideoError
from evopose_sdk.follow import keypoint_boxes
from evopose_sdk.frame_sources import FrameSource, open_source
from evopose_sdk.video import stream
from evopose_sdk.writers import AtomicVideoWriter, ImageFolderWriter, JsonLinesWriter


class CountingDetector:
    """The real SSD detector, counting its calls."""

    def __init__(self) -> None:
        self.inner = ssd_detector()
        self.calls = 0

    def detect(self, image_bgr):
        self.calls += 1
        return self.inner.detect(image_bgr)


@pytest.fixture(scope="module")
def demo_frames_dir(tmp_path_factory):
    """demo.mp4 frames 52-61 (one person walking, always detected) as a folder of JPEGs."""
    return write_frames(52, 10, tmp_path_factory.mktemp("demo_frames"))


@pytest.fixture(scope="module")
def model_path():
    return random_pose_model("XS")


def _estimator(model_path, detector="default"):
    from evopose_sdk import PoseEstimator

    if detector == "default":
        detector = ssd_detector()
    return PoseEstimator(model=str(model_path), detector=detector, flip_test=False, threads=2)


# --------------------------------------------------------------------------- sources


def test_open_source_reads_video_metadata():
    src = open_source(sample("demo.mp4"))
    try:
        assert (src.kind, src.name, src.frame_hw, src.frame_count) == ("video", "demo", (994, 1768), 230)
        assert src.fps == pytest.approx(30.0, rel=0.01)
        (info0, f0), (info1, _) = [x for _, x in zip(range(2), src, strict=False)]
        assert f0.shape == (994, 1768, 3) and f0.dtype == np.uint8
        assert (info0.index, info1.index) == (0, 1)
        assert info1.time_s == pytest.approx(1 / 30, abs=1e-3)
    finally:
        src.close()


def test_open_source_image_folder_sorted_and_skips_unreadable(demo_frames_dir, tmp_path, caplog):
    d = tmp_path / "imgs"
    shutil.copytree(demo_frames_dir, d)
    (d / "frame_005.jpg").write_bytes(b"not a jpeg at all")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    src = open_source(d, fps=10)
    assert (src.kind, src.name, src.frame_count, src.fps) == ("images", "imgs", 10, 10.0)
    infos = [info for info, _ in src]
    assert [i.name for i in infos] == [f"frame_{i:03d}.jpg" for i in range(10) if i != 5]
    assert [i.index for i in infos] == list(range(9))
    assert infos[2].time_s == pytest.approx(0.2)
    assert "frame_005.jpg" in caplog.text


def test_open_source_single_image():
    src = open_source(sample("bus.jpg"))
    frames = list(src)
    assert src.kind == "images" and len(frames) == 1 and frames[0][0].name == "bus.jpg"


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "not found"),
    (lambda d: (d / "text.mp4").write_text("this is a text file renamed .mp4") and d / "text.mp4",
     "cannot read video"),
    (lambda d: (d / "empty.mp4").write_bytes(b"") or d / "empty.mp4", "empty"),
    (lambda d: (d / "empty_dir").mkdir() or d / "empty_dir", "no images"),
    (lambda d: (d / "bad_imgs").mkdir() or (d / "bad_imgs" / "a.jpg").write_bytes(b"xx")
     and d / "bad_imgs", "none of the 1 image"),
])
def test_open_source_bad_inputs_raise_video_error(tmp_path, make, message):
    with pytest.raises(VideoError, match=message):
        open_source(make(tmp_path))


def test_open_source_truncated_video(tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(sample("demo.mp4").read_bytes()[:100_000])  # header intact? moov is at the end
    with pytest.raises(VideoError, match="cannot read video"):
        open_source(cut)


def test_stream_raises_video_error_lazily_for_missing_source():
    gen = stream(object(), "/nonexistent/video.mp4")
    with pytest.raises(VideoError, match="not found"):
        next(gen)


# --------------------------------------------------------------------------- stream


def test_stream_keeps_track_ids_stable_on_real_video(model_path, tmp_path):
    """demo.mp4 frames 43-56: two people (man on a box at the left, woman walking at the
    right), detector every frame; each person keeps one id and its side of the image."""
    cap = cv2.VideoCapture(str(sample("demo.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 43)
    clip = tmp_path / "clip.avi"
    with AtomicVideoWriter(clip, 30.0) as w:
        for _ in range(14):
            ok, frame = cap.read()
            w.write(cv2.resize(frame, (884, 496)))
    cap.release()
    with _estimator(model_path) as est:
        results = [(f.shape, r) for f, r in est.stream(clip, detect_every=1)]
    assert len(results) == 14
    assert all(shape == (496, 884, 3) for shape, _ in results)
    sides: dict[int, set[str]] = {}
    for _, r in results:
        assert {"detect", "pose", "track", "smooth"} <= set(r.speed_ms)
        assert r.keypoints.shape[1:] == (17, 3)
        for tid, box in zip(r.track_ids.tolist(), r.boxes_xyxy, strict=True):
            if tid >= 0:
                sides.setdefault(tid, set()).add("left" if box[0] + box[2] < 884 else "right")
    assert sum(len(r) for _, r in results) >= 20  # both people found in most frames
    assert len(sides) == 2 and all(len(s) == 1 for s in sides.values()), sides


@pytest.mark.parametrize("k", [1, 3, 4])
def test_detect_every_k_calls_detector_ceil_n_over_k_times(model_path, demo_frames_dir, k):
    det = CountingDetector()
    with _estimator(model_path, detector=det) as est:
        # a folder of video frames: tracked only when asked (images are photos by default)
        results = [r for _, r in est.stream(demo_frames_dir, detect_every=k, tracking=True)]
    n = len(results)
    assert n == 10
    assert det.calls == math.ceil(n / k)
    assert all(len(r) >= 1 for r in results)  # crops follow the person between detections
    for i, r in enumerate(results):
        assert (r.speed_ms["detect"] > 0) == (i % k == 0)
    # one person walking: on detector frames the tracker re-finds the track that the
    # keypoint-derived crops carried (random-weight keypoints can make one new id at most)
    ids = {int(t) for r in results for t in r.track_ids} - {-1}
    assert 1 <= len(ids) <= 2, ids


def test_stream_switches_and_max_frames(model_path, demo_frames_dir):
    with _estimator(model_path) as est:
        raw = [r for _, r in est.stream(demo_frames_dir, smoothing=False, tracking=True,
                                        max_frames=4)]
        smooth = [r for _, r in est.stream(demo_frames_dir, smoothing="one-euro", tracking=True,
                                           max_frames=4)]
        untracked = [r for _, r in est.stream(demo_frames_dir, tracking=False, max_frames=3)]
    assert len(raw) == len(smooth) == 4 and len(untracked) == 3
    np.testing.assert_allclose(raw[0].keypoints, smooth[0].keypoints)  # first sample passes
    assert not np.allclose(raw[3].keypoints[..., :2], smooth[3].keypoints[..., :2])
    np.testing.assert_allclose(raw[3].keypoints[..., 2], smooth[3].keypoints[..., 2])
    assert all((r.track_ids == -1).all() and "smooth" not in r.speed_ms for r in untracked)


@pytest.mark.parametrize("kwargs, message", [
    (dict(detect_every=0), "detect_every"),
    (dict(max_frames=-1), "max_frames"),
    (dict(smoothing="kalman"), "smoothing"),
])
def test_stream_rejects_bad_options(demo_frames_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        next(stream(object(), demo_frames_dir, **kwargs))


def test_keypoint_boxes_cover_confident_keypoints():
    from evopose_sdk.result import PoseResult

    kp = np.zeros((3, 17, 3), np.float32)
    kp[0, :, 0] = np.linspace(100, 200, 17)
    kp[0, :, 1] = np.linspace(50, 350, 17)
    kp[0, :, 2] = 0.9
    kp[0, 0] = (10, 10, 0.05)  # low score: ignored
    kp[1, :, 2] = 0.01  # nobody confident: keeps its box
    kp[2, :, 0] = np.linspace(-80, -20, 17)  # confident but all left of the image
    kp[2, :, 1] = np.linspace(10, 200, 17)
    kp[2, :, 2] = 0.9
    r = PoseResult(np.array([[90, 40, 210, 360], [0, 0, 50, 50], [0, 5, 10, 210]], np.float32),
                   np.ones(3, np.float32), kp, np.ones(3, np.float32), image_hw=(400, 300))
    boxes = keypoint_boxes(r, keypoint_threshold=0.2, pad=0.1)
    x1, y1 = kp[0, 1:, :2].min(0)
    x2, y2 = kp[0, 1:, :2].max(0)
    w, h = x2 - x1, y2 - y1
    np.testing.assert_allclose(boxes[0], [x1 - 0.1 * w, y1 - 0.1 * h, x2 + 0.1 * w, y2 + 0.1 * h],
                               rtol=1e-5)
    np.testing.assert_array_equal(boxes[1], [0, 0, 50, 50])
    np.testing.assert_array_equal(boxes[2], [0, 5, 10, 210])


# --------------------------------------------------------------------------- writers


def test_video_writer_roundtrip_and_atomic_abort(tmp_path):
    src = open_source(sample("demo.mp4"))
    frames = [cv2.resize(f, (320, 180)) for (_, f), _ in zip(src, range(12), strict=False)]
    src.close()
    out = tmp_path / "out.mp4"
    with AtomicVideoWriter(out, 30.0) as w:
        for f in frames:
            w.write(f)
        assert not out.exists()  # nothing at the destination until closed
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 180)
    ok, first = cap.read()
    cap.release()
    assert ok and np.abs(first.astype(int) - frames[0]).mean() < 10  # lossy, but the same image

    broken = tmp_path / "broken.mp4"
    with pytest.raises(KeyboardInterrupt), AtomicVideoWriter(broken, 30.0) as w:
        w.write(frames[0])
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == [out]


def test_video_writer_rejects_bad_frames_and_suffix(tmp_path):
    with pytest.raises(VideoError, match="suffix"):
        AtomicVideoWriter(tmp_path / "x.gif", 30)
    w = AtomicVideoWriter(tmp_path / "x.mp4", 30)
    w.write(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(VideoError, match="differs"):
        w.write(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(VideoError, match="uint8"):
        w.write(np.zeros((64, 64), np.float32))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_json_lines_writer_atomic(tmp_path):
    p = tmp_path / "k.jsonl"
    with JsonLinesWriter(p) as w:
        w.write({"frame": 0, "people": []})
        w.write({"frame": 1, "people": [{"score": 0.5}]})
    assert [json.loads(line)["frame"] for line in p.read_text().splitlines()] == [0, 1]
    q = tmp_path / "nan.jsonl"
    with pytest.raises(ValueError), JsonLinesWriter(q) as w:
        w.write({"frame": 0})
        w.write({"score": float("nan")})  # not valid JSON: the whole file is dropped
    assert sorted(x.name for x in tmp_path.iterdir()) == ["k.jsonl"]


def test_image_folder_writer_atomic(tmp_path):
    img = np.full((20, 30, 3), 128, np.uint8)
    with ImageFolderWriter(tmp_path / "out") as w:
        w.write("a.png", img)
        w.write("b.jpg", img)
        assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / "a.png")), img)
    with pytest.raises(RuntimeError), ImageFolderWriter(tmp_path / "out2") as w:
        w.write("a.png", img)
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_frame_source_repr_and_close():
    src = open_source(sample("demo.mp4"))
    assert isinstance(src, FrameSource) and "demo" in repr(src)
    src.close()
    with pytest.raises(VideoError, match="closed"):
        next(iter(src))


def test_detect_every_redetects_when_frame_size_changes(model_path, tmp_path):
    """A folder of photos of different sizes: crops from the previous photo make no sense,
    so the detector runs on each."""
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(sample(name), tmp_path / name)
    det = CountingDetector()
    with _estimator(model_path, detector=det) as est:
        results = [r for _, r in est.stream(tmp_path, detect_every=5, tracking=True)]
    assert det.calls == 2
    assert [r.image_hw for r in results] == [(1080, 810), (720, 1280)]


def test_background_sink_keeps_order_and_raises_on_the_callers_thread() -> None:
    import threading

    done: list[int] = []
    threads: set[str] = set()

    def slow_append(i: int) -> None:
        threads.add(threading.current_thread().name)
        done.append(i)

    with BackgroundSink(slow_append, depth=2) as sink:
        for i in range(50):
            sink.put(i)
    assert done == list(range(50))  # all written, in order, before the block ends
    assert threads == {"evopose-write"}

    def fail_at_3(i: int) -> None:
        if i == 3:
            raise VideoError("disk full")

    sink = BackgroundSink(fail_at_3)
    with pytest.raises(VideoError, match="disk full"):
        for i in range(100):
            sink.put(i)
        sink.close()
    sink.abort()
    sink = BackgroundSink(done.append)
    with pytest.raises(KeyError), sink:  # leaving on an exception aborts: nothing hangs
        sink.put(0)
        raise KeyError("stop")
    assert not sink._thread.is_alive()
