"""ByteTrack-style tracker and One-Euro smoothing, on real detections from the demo video."""

from __future__ import annotations

import numpy as np
import pytest
from _video_helpers import demo_detections, write_frames

from evopose_sdk.smoothing import KeypointSmoother, OneEuroFilter
from evopose_sdk.tracking import ByteTracker, box_iou

# --------------------------------------------------------------------------- box_iou


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
    ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
    ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
    ([0, 0, 10, 10], [0, 0, 0, 0], 0.0),  # degenerate box
])
def test_box_iou_table(a, b, expected):
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


def test_box_iou_empty_shapes():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


# --------------------------------------------------------------------------- tracker logic


@pytest.mark.parametrize("kwargs, error", [
    (dict(low_score=0.6, high_score=0.5), "low_score"),
    (dict(max_lost=-1), "max_lost"),
])
def test_tracker_rejects_bad_parameters(kwargs, error):
    with pytest.raises(ValueError, match=error):
        ByteTracker(**kwargs)


def test_tracker_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="disagree"):
        ByteTracker().update(np.zeros((2, 4)), np.zeros(3))


def test_tracker_ids_follow_boxes_not_order():
    t = ByteTracker()
    a, b = [0, 0, 50, 100], [200, 0, 250, 100]
    first = t.update(np.array([a, b]), np.array([0.9, 0.8]))
    shifted = t.update(np.array([[205, 2, 255, 102], [3, 1, 53, 101]]), np.array([0.9, 0.9]))
    assert first.tolist() == [1, 2]
    assert shifted.tolist() == [2, 1]


def test_low_score_box_extends_track_and_starts_one_only_above_new_track_score():
    t = ByteTracker(high_score=0.5, low_score=0.1, new_track_score=0.5)  # ByteTrack's rule
    t.update(np.array([[0, 0, 50, 100]]), np.array([0.9]))
    # occluded: the same person scores 0.3 -> second association keeps id 1
    assert t.update(np.array([[2, 0, 52, 100]]), np.array([0.3])).tolist() == [1]
    # a new low-score box elsewhere gets no id
    assert t.update(np.array([[2, 0, 52, 100], [300, 0, 350, 100]]),
                    np.array([0.9, 0.3])).tolist() == [1, -1]
    # the default (0.3, the default detector's threshold): every box it poses gets an id
    d = ByteTracker()
    assert d.update(np.array([[0, 0, 50, 100], [300, 0, 350, 100]]),
                    np.array([0.9, 0.3])).tolist() == [1, 2]
    assert d.update(np.array([[400, 0, 450, 100]]), np.array([0.2])).tolist() == [-1]


def test_low_score_box_revives_a_lost_track_instead_of_starting_one():
    t = ByteTracker()
    t.update(np.array([[0, 0, 50, 100]]), np.array([0.9]))
    t.update(np.zeros((0, 4)), np.zeros(0))  # missed for a frame: track 1 is lost
    assert t.update(np.array([[3, 0, 53, 100]]), np.array([0.35])).tolist() == [1]


def test_lost_track_recovers_within_max_lost_and_is_dropped_after():
    t = ByteTracker(max_lost=5)
    box = np.array([[100, 100, 150, 200]])
    t.update(box, np.array([0.9]))
    for _ in range(5):
        t.update(np.zeros((0, 4)), np.zeros(0))
    assert t.update(box, np.array([0.9])).tolist() == [1]
    for _ in range(6):
        t.update(np.zeros((0, 4)), np.zeros(0))
    assert t.num_tracks == 0
    assert t.update(box, np.array([0.9])).tolist() == [2]


# --------------------------------------------------------------------------- real video


def test_tracker_keeps_two_people_apart_on_demo_video():
    """Frames 43-87 of demo.mp4: a man on a box (left) and a woman walking towards him (right);
    SSD reorders them between frames. Each keeps one id, and the ids never swap sides."""
    dets = demo_detections(32, 56)  # frames 32..87
    t = ByteTracker()
    side_of: dict[int, set[str]] = {}
    for boxes, scores in dets:
        ids = t.update(boxes, scores)
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        for tid, x in zip(ids.tolist(), cx.tolist(), strict=True):
            if tid >= 0:
                side_of.setdefault(tid, set()).add("left" if x < 884 else "right")
    assert len(side_of) == 2, side_of
    assert all(len(sides) == 1 for sides in side_of.values()), side_of


def test_tracker_bridges_missed_detections_on_demo_video():
    """Frames 6-40: the detector misses the backlit man for 15 frames (17-31); his id survives."""
    dets = demo_detections(6, 35)
    t = ByteTracker(max_lost=30)
    ids = [t.update(b, s).tolist() for b, s in dets]
    assert sum(len(i) == 0 for i in ids) >= 10  # the gap is real
    assert {tid for frame in ids for tid in frame} == {1}


# --------------------------------------------------------------------------- One-Euro


def _jitter(track: np.ndarray) -> float:
    """Mean absolute second difference (px / frame^2)."""
    return float(np.abs(np.diff(track, n=2, axis=0)).mean())


def test_one_euro_reduces_jitter_on_real_detector_trajectory():
    """The SSD box corners of the walking woman (frames 52-66, one detection per frame, real
    detector noise) get much smoother, and stay close to the raw trajectory."""
    dets = demo_detections(52, 15)
    raw = np.array([boxes[0] for boxes, _ in dets], np.float64)  # (T, 4) x1 y1 x2 y2
    assert len(raw) == 15
    f = OneEuroFilter(min_cutoff=1.0, beta=0.01)
    smooth = np.array([f(r, i / 30.0) for i, r in enumerate(raw)])
    assert _jitter(smooth) < 0.5 * _jitter(raw)
    height = float(np.median(raw[:, 3] - raw[:, 1]))
    assert np.abs(smooth - raw).mean() < 0.05 * height


def test_one_euro_passes_fast_motion_with_little_lag():
    """beta raises the cutoff with speed: a ramp at 20 px/frame lags far less with beta > 0."""
    t = np.arange(60) / 30.0
    ramp = 20.0 * np.arange(60)
    lag = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(np.array([x]), ti)[0] for x, ti in zip(ramp, t, strict=True)])
        lag[beta] = ramp[-1] - out[-1]
    assert lag[0.05] < 0.25 * lag[0.0]


@pytest.mark.parametrize("kwargs", [dict(min_cutoff=0), dict(beta=-1), dict(d_cutoff=0)])
def test_one_euro_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError, match="OneEuroFilter"):
        OneEuroFilter(**kwargs)


def test_keypoint_smoother_per_track_and_untracked_passthrough():
    rng = np.random.default_rng(0)
    sm = KeypointSmoother()
    base = rng.uniform(0, 500, (2, 17, 3)).astype(np.float32)
    sm(base, np.array([1, -1]), 0.0)
    noisy = base + rng.normal(0, 5, base.shape).astype(np.float32)
    out = sm(noisy, np.array([1, -1]), 1 / 30)
    # tracked person is pulled towards its previous pose; untracked is unchanged
    assert np.abs(out[0, :, :2] - base[0, :, :2]).mean() < np.abs(noisy[0, :, :2] - base[0, :, :2]).mean()
    np.testing.assert_array_equal(out[1], noisy[1])
    np.testing.assert_array_equal(out[:, :, 2], noisy[:, :, 2])  # scores untouched
    with pytest.raises(ValueError, match="n, K, 3"):
        sm(base[:, :, :2], np.array([1, 2]), 0.1)


# --------------------------------------------------------------------------- detector gaps


class _BlindDetector:
    """The real default detector (YOLOX-nano, one view), seeing nobody on the calls in
    ``blind``: a detector gap of len(blind) x detect_every frames on real video."""

    thread_safe = True

    def __init__(self, blind: set[int]) -> None:
        from evopose_sdk.detectors import YOLOXOnnxDetector

        self.inner, self.blind, self.calls = YOLOXOnnxDetector(threads=1, flip=False), blind, 0

    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.calls in self.blind:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        return self.inner.detect(image_bgr)


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory):
    """demo.mp4 frames 66-101 (the man on the roof at the left, the woman walking at the
    right), half size, as a folder of PNG frames."""
    return write_frames(66, 36, tmp_path_factory.mktemp("demo_66_101"), (884, 497),
                        suffix=".png")


def test_people_keep_id_and_pose_through_a_detector_gap(demo_clip):
    """the detector sees nobody on its 3rd-6th calls (frames 6-17 of 36 at
    detect_every=3; and on frame 24 it misses the man by itself). Both people stay in every
    frame, posed from the crops that follow their keypoints, with the ids they had before
    the gap; nobody is untracked (-1)."""
    from evopose_sdk import PoseEstimator

    det = _BlindDetector(blind={3, 4, 5, 6})
    with PoseEstimator(detector=det, flip_test=False, threads=2) as est:
        results = [r for _, r in est.stream(demo_clip, detect_every=3, tracking=True)]
    assert det.calls == 12 and len(results) == 36
    before = {int(t): "left" if b[0] + b[2] < 884 else "right"
              for t, b in zip(results[5].track_ids, results[5].boxes_xyxy, strict=True)}
    assert sorted(before.values()) == ["left", "right"], before
    for i, r in enumerate(results[5:], start=5):
        assert len(r) == 2, (i, r)
        assert -1 not in r.track_ids.tolist()
        sides = {int(t): "left" if b[0] + b[2] < 884 else "right"
                 for t, b in zip(r.track_ids, r.boxes_xyxy, strict=True)}
        assert sides == before, (i, sides)  # same ids, same people
        assert (r.keypoints[:, :, 2] >= 0.3).sum(axis=1).min() >= 6  # a pose, not a stale box


def test_gap_filler_lets_go_of_a_person_the_pose_network_no_longer_sees(demo_clip):
    """A keypoint box moved onto empty grass: the followed 'person' there has no pose, so it
    is dropped on the next detector frame instead of being carried on as a ghost."""
    import cv2

    from evopose_sdk import PoseEstimator
    from evopose_sdk.tracking import DetectorGapFiller

    frame = cv2.imread(str(demo_clip / "frame_000.png"))
    with PoseEstimator(detector="whole-image", flip_test=False, threads=2) as est:
        grass = est.estimate_boxes(frame, [[330, 400, 420, 495]])
        grass.track_ids = np.array([7])
        filler = DetectorGapFiller()
        boxes, scores, ids = filler.missed(grass, grass.boxes_xyxy, np.zeros((0, 4)),
                                           np.zeros(0))
        assert ids.tolist() == [7]
        assert len(boxes) == 1  # no detection covers it: followed ...
        posed = est.estimate_detections(frame, boxes, scores)
        assert not filler.keep(posed, np.zeros((0, 4))).any()  # ... and let go


def test_two_people_side_by_side_keep_their_ids_when_a_followed_box_drifts():
    """vtest.avi frames 24-30 as the video stream saw them (rounded): a pair walks left side
    by side; between detector frames the jacket's followed box grows onto his neighbour
    (frames 28-29), so it overlaps her detection at frame 30 more than his own. Both must
    keep their ids: the tracker also places each track at its last detection moved on, and
    matches as many people as possible before maximising overlap."""
    jacket_det = {24: [657, 268, 696, 359], 27: [647, 265, 686, 359], 30: [624, 258, 659, 346]}
    blonde_det = {24: [678, 261, 731, 361], 27: [672, 259, 719, 358], 30: [659, 252, 697, 351]}
    jacket_followed = {25: [663, 260, 698, 365], 26: [662, 260, 703, 364],
                       28: [648, 259, 708, 364], 29: [643, 256, 695, 357]}
    blonde_followed = {25: [683, 265, 736, 365], 26: [677, 262, 733, 364],
                       28: [678, 259, 725, 360], 29: [673, 255, 714, 359]}
    t = ByteTracker()
    ids = {}
    for frame in range(24, 31):
        if frame in jacket_det:  # detector frame: her box first, as the detector gave them
            got = t.update(np.array([blonde_det[frame], jacket_det[frame]], float),
                           np.array([0.8, 0.8]))
            blonde, jacket = int(got[0]), int(got[1])
            ids.setdefault("jacket", jacket)
            ids.setdefault("blonde", blonde)
            assert (jacket, blonde) == (ids["jacket"], ids["blonde"]), frame
        else:  # crops that followed each one's keypoints
            t.update(np.array([jacket_followed[frame], blonde_followed[frame]], float),
                     np.array([0.8, 0.8]), known_ids=np.array([ids["jacket"], ids["blonde"]]))
    assert ids["jacket"] != ids["blonde"]
