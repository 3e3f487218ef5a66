"""Persistent person ids across video frames: a ByteTrack-style box tracker.

Association follows ByteTrack (Zhang et al., ECCV 2022): detections are split by score;
boxes whose track is known (a crop that followed its keypoints) keep it; then high-score boxes
are matched to every other live track (active and recently lost) by IoU,
then the low-score boxes are matched to the tracks that are still unmatched (ByteTrack: the
active ones only; here lost ones too, as a low box that matches nothing starts a track),
which keeps ids through occlusion. :class:`DetectorGapFiller` keeps the people a detector
misses for a few frames in a video's results, posed from their keypoint boxes. A track is
matched at whichever of three places overlaps a box more: its box predicted forward with a
smoothed constant-velocity model, its box as it was, and its last detection moved on at the
velocity between detections (a box that followed the keypoints can drift onto a neighbour;
vtest.avi's pair walking side by side swapped ids that way). Matching takes as many pairs
as the IoU gate allows, then the largest total IoU.

The optimal assignment is solved with ``lap.lapjv`` (PyPI ``lap``: a small, maintained,
numpy-only C++ solver of the linear assignment problem) when it is installed, otherwise
with a greedy IoU matcher (exact for the usual case of well-separated people).

Why not an off-the-shelf tracker package: ``supervision`` 0.31 no longer ships ByteTrack
(it moved to ``trackers``, which requires ``opencv-python`` and so clashes with the
``opencv-python-headless`` this SDK depends on, and pulls ``supervision``, ``rich``,
``scipy``); ``supervision`` 0.30 still has it but pulls matplotlib, PyAV, Pillow and
SciPy into a runtime that otherwise needs numpy, onnxruntime and OpenCV; ``norfair``
pins ``numpy<2``. The association logic here is ~100 lines; the solver is ``lap``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from evopose_sdk.result import PoseResult

__all__ = ["ByteTracker", "DetectorGapFiller", "box_iou", "assign_by_iou"]

logger = logging.getLogger(__name__)

try:  # optional fast exact solver
    import lap as _lap
except ImportError:  # pragma: no cover - depends on the environment
    _lap = None


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) between boxes ``a`` (n, 4) and ``b`` (m, 4), xyxy pixels."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def assign_by_iou(iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (row, col), each with IoU >= ``min_iou``: as many pairs as possible, and among
    those the largest total IoU (the CLEAR-MOT matching rule). Maximising total IoU alone
    would leave two people unmatched where one box overlaps both: a track whose box spans
    two people walking side by side takes the one detection it overlaps most, and the
    other person's track and detection both go unmatched (a new id, then a switch)."""
    if iou.size == 0:
        return []
    feasible = iou >= min_iou
    if not feasible.any():
        return []
    if _lap is not None:
        # an infeasible pair costs more than any set of feasible ones: fewest such first
        cost = np.where(feasible, 1.0 - iou, float(min(iou.shape) + 1))
        _, x, _ = _lap.lapjv(cost, extend_cost=True)
        return [(r, int(c)) for r, c in enumerate(x) if c >= 0 and feasible[r, c]]
    pairs, used_r, used_c = [], set(), set()  # greedy: exact for well-separated people
    for flat in np.argsort(-iou, axis=None):
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < min_iou:
            break
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) xyxy at the last update
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # px / frame
    lost: int = 0  # frames since the last match
    hits: int = 1
    # the last box matched by overlap (a detection, not a crop that followed keypoints), its
    # velocity from one such box to the next, and the frames since: keypoint boxes change
    # shape with the pose and drift onto a neighbour, detections of one person do not
    anchor: np.ndarray | None = None
    anchor_velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    anchor_age: int = 0
    anchors: int = 1  # boxes matched by overlap so far (the first one included)

    def __post_init__(self) -> None:
        if self.anchor is None:
            self.anchor = self.box.astype(np.float64).copy()

    def predicted(self, decay: float = 0.8) -> np.ndarray:
        # constant velocity, damped while the track is lost: the n-th unseen frame moves
        # decay**n of a step (at most decay / (1 - decay) = 4 steps in all)
        steps = decay * (1.0 - decay ** (self.lost + 1)) / (1.0 - decay)
        return self.box + self.velocity * steps

    def anchor_predicted(self) -> np.ndarray:
        """The last detection moved on to this frame at the velocity between detections (the
        followed boxes' velocity until a second detection gives one), for at most 6 frames."""
        velocity = self.anchor_velocity if self.anchors > 1 else self.velocity
        # at most 6 frames on (two detector intervals at the default of every 3rd frame): a
        # track lost for longer is not carried across the picture into someone else
        return self.anchor + velocity * min(self.anchor_age + 1, 6)

    def update(self, box: np.ndarray, momentum: float, anchor: bool = False) -> None:
        step = (box - self.box) / (self.lost + 1)
        self.velocity = momentum * self.velocity + (1.0 - momentum) * step
        self.box = box.astype(np.float64)
        self.lost = 0
        self.hits += 1
        if anchor:
            step = (box - self.anchor) / (self.anchor_age + 1)
            keep = momentum if self.anchors > 1 else 0.0  # the first measurement taken whole
            self.anchor_velocity = keep * self.anchor_velocity + (1.0 - keep) * step
            self.anchor = self.box.copy()
            self.anchor_age = 0
            self.anchors += 1


class ByteTracker:
    """ByteTrack-style association of person boxes to persistent integer ids.

    Args:
        high_score: boxes scoring at least this take part in the first association.
        low_score: boxes below this are ignored; those in [low_score, high_score) only
            extend existing tracks (second association).
        new_track_score: an unmatched box starts a new track if it scores at least this
            (and ``low_score``). 0.3, the default detector's threshold: every person the
            video pipeline poses gets an id (was 0.5, which left 0.3-0.5 boxes at -1).
        match_iou: minimum IoU for the first association (predicted track vs box).
        low_match_iou: minimum IoU for the second association (low-score boxes). 0.3 (ByteTrack:
            0.5): a detector box and the keypoint box a track last had differ in shape, and a
            person whose low box matched nothing got a new id (demo.mp4's woman at frame 108).
        max_lost: frames a track survives unmatched before it is dropped.
        momentum: smoothing of the per-frame box velocity (0 = last step only).

    ``update(boxes, scores)`` returns one id per box (int64), -1 where a box was not
    associated (below ``low_score``, or a new box below ``new_track_score``). Ids start at 1.
    """

    def __init__(self, high_score: float = 0.5, low_score: float = 0.1,
                 new_track_score: float = 0.3, match_iou: float = 0.2,
                 low_match_iou: float = 0.3, max_lost: int = 30, momentum: float = 0.8) -> None:
        if not 0 <= low_score <= high_score:
            raise ValueError(f"need 0 <= low_score <= high_score; received {low_score}, {high_score}")
        if max_lost < 0:
            raise ValueError(f"max_lost must be >= 0; received {max_lost}")
        self.high_score, self.low_score = float(high_score), float(low_score)
        self.new_track_score = float(new_track_score)
        self.match_iou, self.low_match_iou = float(match_iou), float(low_match_iou)
        self.max_lost, self.momentum = int(max_lost), float(momentum)
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 1

    @property
    def num_tracks(self) -> int:
        """Live tracks (active or lost but not yet dropped)."""
        return len(self._tracks)

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray,
               known_ids: np.ndarray | None = None) -> np.ndarray:
        """Associate this frame's ``boxes_xyxy`` (n, 4) px with ``scores`` (n,) to track ids.

        ``known_ids`` (n,): boxes whose track is known already (a crop that followed that
        track's keypoints from the previous frame) keep it when it is live, with no IoU test
        (keypoint boxes change shape with the pose, so IoU alone would start new tracks on
        them); -1 (or None for all): associate as usual.

        Returns track ids (n,) int64, -1 for unassociated boxes.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"boxes (n, 4) and scores (n,) disagree: {boxes.shape} vs {scores.shape}")
        ids = np.full(len(boxes), -1, dtype=np.int64)
        tracks = self._tracks
        matched_tracks: set[int] = set()
        # 0) boxes that followed a live track
        if known_ids is not None:
            index = {t.track_id: i for i, t in enumerate(tracks)}
            for d, tid in enumerate(np.asarray(known_ids, np.int64).reshape(-1)):
                c = index.get(int(tid), -1)
                if c >= 0 and c not in matched_tracks:
                    tracks[c].update(boxes[d], self.momentum)
                    ids[d] = tid
                    matched_tracks.add(c)
        free = ids < 0
        high = np.flatnonzero(free & (scores >= self.high_score))
        low = np.flatnonzero(free & (scores >= self.low_score) & (scores < self.high_score))
        rest = [i for i in range(len(tracks)) if i not in matched_tracks]
        pred = np.array([tracks[i].predicted() for i in rest]).reshape(-1, 4)
        last = np.array([tracks[i].box for i in rest]).reshape(-1, 4)
        anchor = np.array([tracks[i].anchor_predicted() for i in rest]).reshape(-1, 4)
        anchored = np.zeros(len(tracks), bool)

        def overlap(sel: np.ndarray, cols: list[int] | slice) -> np.ndarray:
            # each track at three places, whichever overlaps more: its box predicted, its box
            # as it was (motion extrapolated from jittery boxes or over a gap drifts), and its
            # last detection moved on (a followed box that drifted onto a neighbour)
            return np.maximum.reduce([box_iou(boxes[sel], pred[cols]),
                                      box_iou(boxes[sel], last[cols]),
                                      box_iou(boxes[sel], anchor[cols])])

        # 1) high-score boxes vs the other live tracks
        for r, c in assign_by_iou(overlap(high, slice(None)), self.match_iou):
            d, t = int(high[r]), tracks[rest[c]]
            t.update(boxes[d], self.momentum, anchor=True)
            ids[d] = t.track_id
            matched_tracks.add(rest[c])
            anchored[rest[c]] = True
        # 2) low-score boxes vs the tracks still unmatched (ByteTrack: the active ones only;
        #    here lost ones too: a low box that matched no track would start a new one below)
        left = [k for k, i in enumerate(rest) if i not in matched_tracks]
        if len(low) and left:
            iou = overlap(low, left)
            for r, c in assign_by_iou(iou, self.low_match_iou):
                d, t = int(low[r]), tracks[rest[left[c]]]
                t.update(boxes[d], self.momentum, anchor=True)
                ids[d] = t.track_id
                matched_tracks.add(rest[left[c]])
                anchored[rest[left[c]]] = True
        # 3) age unmatched tracks, drop old ones
        for i, t in enumerate(tracks):
            if i not in matched_tracks:
                t.lost += 1
            if not anchored[i]:  # one more frame since its last detection
                t.anchor_age += 1
        self._tracks = [t for t in tracks if t.lost <= self.max_lost]
        # 4) new tracks from unmatched boxes scoring new_track_score or more
        for d in np.argsort(-scores, kind="stable"):
            if ids[d] < 0 and scores[d] >= max(self.new_track_score, self.low_score):
                self._tracks.append(_Track(self._next_id, boxes[d].copy()))
                ids[d] = self._next_id
                self._next_id += 1
        return ids


class DetectorGapFiller:
    """Keeps a tracked person whom the detector misses for a few frames (backlit, crouching,
    half hidden): on a detector frame, the people of the previous frame that no detection
    covers are posed again from their keypoint boxes (the crops that follow the keypoints
    between detector frames), so they keep their pose and, through the tracker, their id.

    A person is followed this way for at most ``max_frames`` frames since the detector last
    reported them, and only while the pose network still sees them: at least
    ``min_keypoints`` keypoints scoring ``keypoint_threshold`` or more; anyone else is dropped
    as before. The video stream (:func:`~evopose_sdk.video.stream`) uses one when tracking.

    Use per frame: :meth:`missed` (detector frames: boxes to pose beside the detections, with
    their track ids), :meth:`keep` (detector frames: which posed people to keep),
    :meth:`known_ids` (the followed people's ids, for ``ByteTracker.update(known_ids=...)``),
    then :meth:`update` with the tracked result.

    Args:
        max_frames: frames a person may go unconfirmed by the detector (30: 1 s at 30 fps).
        cover_iou: a detection with at least this IoU with a person's keypoint box covers them.
        keypoint_threshold, min_keypoints: what a followed person's new pose must show.
    """

    def __init__(self, max_frames: int = 30, cover_iou: float = 0.3,
                 keypoint_threshold: float = 0.3, min_keypoints: int = 6) -> None:
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0; received {max_frames}")
        self.max_frames, self.cover_iou = int(max_frames), float(cover_iou)
        self.keypoint_threshold, self.min_keypoints = float(keypoint_threshold), int(min_keypoints)
        self._unconfirmed: dict[int, int] = {}  # track id -> frames since the detector saw it

    def reset(self) -> None:
        self._unconfirmed = {}

    def missed(self, previous: PoseResult | None, follow_boxes: np.ndarray,
               boxes_xyxy: np.ndarray, scores: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The detector frame's ``boxes_xyxy`` (n, 4) and ``scores`` (n,) with, appended,
        ``follow_boxes`` (the previous frame's people's keypoint boxes, one per person of
        ``previous``) of the tracked people no detection covers and not yet followed for
        ``max_frames``, at their previous box scores; and each box's known track id (-1 for
        the detections)."""
        boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        none = np.full(len(boxes), -1, np.int64)
        if previous is None or len(previous) == 0:
            return boxes, scores, none
        ids = previous.track_ids
        ok = (ids >= 0) & np.array([self._unconfirmed.get(int(t), 0) < self.max_frames
                                    for t in ids], bool)
        if len(boxes) and ok.any():
            ok &= box_iou(follow_boxes, boxes).max(axis=1) < self.cover_iou
        if not ok.any():
            return boxes, scores, none
        return (np.concatenate([boxes, follow_boxes[ok].astype(np.float32)]),
                np.concatenate([scores, previous.box_scores[ok]]),
                np.concatenate([none, ids[ok]]))

    @staticmethod
    def known_ids(result: PoseResult, boxes_xyxy: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The known track id of each person of ``result`` posed from ``boxes_xyxy`` (in any
        order, some dropped): the id of the box it was posed from, -1 where none is known."""
        out = np.full(len(result), -1, np.int64)
        if len(result) and len(boxes_xyxy):
            iou = box_iou(result.boxes_xyxy, boxes_xyxy)
            best = iou.argmax(axis=1)
            same = iou[np.arange(len(result)), best] > 0.99
            out[same] = np.asarray(ids, np.int64)[best[same]]
        return out

    def keep(self, result: PoseResult, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Bool (len(result),): people posed from a detection (their box is one of the
        detector's ``boxes_xyxy``) or, if followed, whose pose shows a person."""
        detected = self._from(result, boxes_xyxy)
        seen = (result.keypoints[:, :, 2] >= self.keypoint_threshold).sum(axis=1)
        return detected | (seen >= self.min_keypoints)

    def update(self, result: PoseResult, boxes_xyxy: np.ndarray | None) -> None:
        """Count frames since the detector last reported each track of ``result``
        (``boxes_xyxy``: this frame's detector boxes, None on a frame without the detector)."""
        detected = self._from(result, boxes_xyxy) if boxes_xyxy is not None \
            else np.zeros(len(result), bool)
        self._unconfirmed = {int(t): 0 if d else self._unconfirmed.get(int(t), 0) + 1
                             for t, d in zip(result.track_ids, detected, strict=True) if t >= 0}

    @staticmethod
    def _from(result: PoseResult, boxes_xyxy: np.ndarray | None) -> np.ndarray:
        if boxes_xyxy is None or len(boxes_xyxy) == 0 or len(result) == 0:
            return np.zeros(len(result), bool)
        return box_iou(result.boxes_xyxy, boxes_xyxy).max(axis=1) > 0.99
