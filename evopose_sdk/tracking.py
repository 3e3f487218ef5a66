"""Persistent person ids across video frames: a ByteTrack-style box tracker.

Association follows ByteTrack (Zhang et al., ECCV 2022): detections are split by score;
high-score boxes are matched first to every live track (active and recently lost) by IoU,
then the low-score boxes are matched to the active tracks that are still unmatched, which
keeps ids through occlusion without starting tracks on false positives. Track boxes are
predicted forward with a smoothed constant-velocity model before matching.

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

import numpy as np

__all__ = ["ByteTracker", "box_iou", "assign_by_iou"]

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
    """Pairs (row, col) maximising total IoU with every pair's IoU >= ``min_iou``."""
    if iou.size == 0:
        return []
    if _lap is not None:
        _, x, _ = _lap.lapjv(1.0 - iou, extend_cost=True, cost_limit=1.0 - min_iou + 1e-9)
        return [(r, int(c)) for r, c in enumerate(x) if c >= 0 and iou[r, c] >= min_iou]
    pairs, used_r, used_c = [], set(), set()
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

    def predicted(self, decay: float = 0.8) -> np.ndarray:
        # constant velocity, damped while the track is lost: the n-th unseen frame moves
        # decay**n of a step (at most decay / (1 - decay) = 4 steps in all)
        steps = decay * (1.0 - decay ** (self.lost + 1)) / (1.0 - decay)
        return self.box + self.velocity * steps

    def update(self, box: np.ndarray, momentum: float) -> None:
        step = (box - self.box) / (self.lost + 1)
        self.velocity = momentum * self.velocity + (1.0 - momentum) * step
        self.box = box.astype(np.float64)
        self.lost = 0
        self.hits += 1


class ByteTracker:
    """ByteTrack-style association of person boxes to persistent integer ids.

    Args:
        high_score: boxes scoring at least this take part in the first association.
        low_score: boxes below this are ignored; those in [low_score, high_score) only
            extend existing tracks (second association).
        new_track_score: an unmatched box starts a new track if it scores at least this.
        match_iou: minimum IoU for the first association (predicted track vs box).
        low_match_iou: minimum IoU for the second association (low-score boxes).
        max_lost: frames a track survives unmatched before it is dropped.
        momentum: smoothing of the per-frame box velocity (0 = last step only).

    ``update(boxes, scores)`` returns one id per box (int64), -1 where a box was not
    associated (low score, or a new box below ``new_track_score``). Ids start at 1.
    """

    def __init__(self, high_score: float = 0.5, low_score: float = 0.1,
                 new_track_score: float = 0.5, match_iou: float = 0.2,
                 low_match_iou: float = 0.5, max_lost: int = 30, momentum: float = 0.8) -> None:
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

    def update(self, boxes_xyxy: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Associate this frame's ``boxes_xyxy`` (n, 4) px with ``scores`` (n,) to track ids.

        Returns track ids (n,) int64, -1 for unassociated boxes.
        """
        boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"boxes (n, 4) and scores (n,) disagree: {boxes.shape} vs {scores.shape}")
        ids = np.full(len(boxes), -1, dtype=np.int64)
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))

        tracks = self._tracks
        pred = np.array([t.predicted() for t in tracks]).reshape(-1, 4)
        last = np.array([t.box for t in tracks]).reshape(-1, 4)
        lost = np.array([t.lost > 0 for t in tracks], dtype=bool)
        matched_tracks: set[int] = set()
        # 1) high-score boxes vs all live tracks; a lost track matches its predicted or its
        #    last seen box, whichever overlaps more (motion extrapolated over a long gap drifts)
        iou = box_iou(boxes[high], pred)
        if lost.any():
            iou[:, lost] = np.maximum(iou[:, lost], box_iou(boxes[high], last[lost]))
        for r, c in assign_by_iou(iou, self.match_iou):
            d, t = int(high[r]), tracks[c]
            t.update(boxes[d], self.momentum)
            ids[d] = t.track_id
            matched_tracks.add(c)
        # 2) low-score boxes vs still-unmatched tracks that were active last frame
        rest = [i for i, t in enumerate(tracks) if i not in matched_tracks and t.lost == 0]
        if len(low) and rest:
            for r, c in assign_by_iou(box_iou(boxes[low], pred[rest]), self.low_match_iou):
                d, t = int(low[r]), tracks[rest[c]]
                t.update(boxes[d], self.momentum)
                ids[d] = t.track_id
                matched_tracks.add(rest[c])
        # 3) age unmatched tracks, drop old ones
        for i, t in enumerate(tracks):
            if i not in matched_tracks:
                t.lost += 1
        self._tracks = [t for t in tracks if t.lost <= self.max_lost]
        # 4) new tracks from confident unmatched boxes
        for d in high:
            if ids[d] < 0 and scores[d] >= self.new_track_score:
                self._tracks.append(_Track(self._next_id, boxes[d].copy()))
                ids[d] = self._next_id
                self._next_id += 1
        return ids
