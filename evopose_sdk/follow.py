"""Which boxes a video frame's crops come from: the person detector on its schedule (frames 0,
k, 2k, ...; :func:`scheduled_frames`, run ahead in :mod:`~evopose_sdk.video`'s worker thread),
and between detector frames each person's keypoints from the previous frame
(:func:`keypoint_boxes`), so the pose network follows the person; on a detector frame, the
people the detector missed are followed too (:func:`detector_frame`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from evopose_sdk.frame_sources import FrameInfo, FrameSource

if TYPE_CHECKING:
    from evopose_sdk.result import PoseResult
    from evopose_sdk.tracking import DetectorGapFiller
    from evopose_sdk.video import VideoEstimator


def keypoint_boxes(result: PoseResult, keypoint_threshold: float = 0.2, pad: float = 0.1,
                   min_keypoints: int = 3) -> np.ndarray:
    """Person boxes (n, 4) xyxy px from each person's keypoints, for the next frame's crops.

    The box is the extent of keypoints scoring at least ``keypoint_threshold``, grown by
    ``pad`` x its size on every side and clipped to the image. People with fewer than
    ``min_keypoints`` such keypoints, or whose keypoints give a degenerate box (e.g. all
    off the image), keep their current box.
    """
    boxes = result.boxes_xyxy.astype(np.float32).copy()
    h, w = result.image_hw
    for i in range(len(result)):
        kp = result.keypoints[i]
        ok = kp[:, 2] >= keypoint_threshold
        if int(ok.sum()) < min_keypoints:
            continue
        x1, y1 = kp[ok, :2].min(axis=0)
        x2, y2 = kp[ok, :2].max(axis=0)
        bw, bh = x2 - x1, y2 - y1
        if bw < 2 or bh < 2:
            continue
        box = (max(0.0, x1 - pad * bw), max(0.0, y1 - pad * bh),
               min(w - 1.0, x2 + pad * bw), min(h - 1.0, y2 + pad * bh))
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:  # else: keypoints off the image
            boxes[i] = box
    return boxes


Detections = tuple[np.ndarray, np.ndarray, float]  # boxes_xyxy (n, 4), scores (n,), detect ms


def detector_frame(estimator: VideoEstimator, frame: np.ndarray, detections: Detections,
                   previous: PoseResult | None, filler: DetectorGapFiller | None,
                   keypoint_box_threshold: float, flip: dict[str, bool]
                   ) -> tuple[PoseResult, np.ndarray | None]:
    """A detector frame's people: the detections and, with ``filler``, the previous frame's
    tracked people no detection covers, posed from their keypoint boxes (kept while their
    pose shows a person; :class:`~evopose_sdk.tracking.DetectorGapFiller`); and the track
    ids known for them (-1 for the detections; None: no one followed)."""
    boxes, scores, detect_ms = detections
    if filler is None or previous is None or tuple(previous.image_hw) != frame.shape[:2]:
        return estimator.estimate_detections(frame, boxes, scores, detect_ms, **flip), None
    all_boxes, all_scores, ids = filler.missed(
        previous, keypoint_boxes(previous, keypoint_box_threshold), boxes, scores)
    result = estimator.estimate_detections(frame, all_boxes, all_scores, detect_ms, **flip)
    if len(all_boxes) == len(boxes):
        return result, None
    result = result[filler.keep(result, boxes)]
    return result, filler.known_ids(result, all_boxes, ids)


def scheduled_frames(src: FrameSource, estimator: VideoEstimator, detect_every: int,
                     max_frames: int | None, detector_lock: threading.Lock,
                     flip: dict[str, bool]
                     ) -> Iterator[tuple[FrameInfo, np.ndarray, Detections | None, float]]:
    """``(info, frame, detections, decode_ms)`` for each frame; ``detections`` on the
    detector's schedule (frames 0, k, 2k, ...), else None; ``flip`` (``{"flip_test": ...}``)
    goes to the estimator's ``detect``."""
    frames = iter(src)
    while True:
        t0 = time.perf_counter()
        item = next(frames, None)
        if item is None:
            return
        info, frame = item
        if max_frames is not None and info.index >= max_frames:
            return
        t1 = time.perf_counter()
        detections = None
        if info.index % detect_every == 0:
            with detector_lock:
                boxes, scores = estimator.detect(frame, **flip)
            detections = (boxes, scores, (time.perf_counter() - t1) * 1e3)
        yield info, frame, detections, (t1 - t0) * 1e3
