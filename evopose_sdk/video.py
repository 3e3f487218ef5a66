"""Pose on video: frame sources, and a generator of (frame, PoseResult) with tracking.

>>> from evopose_sdk import PoseEstimator
>>> with PoseEstimator("evopose2d-s") as est:                       # doctest: +SKIP
...     for frame, people in est.stream("walk.mp4", detect_every=3):
...         print(people.track_ids, people.speed_ms)

A source is a video file, a folder of images (sorted by name), one image file, or a
webcam index (``0`` or ``"0"``). Each frame is estimated as one batch of crops by the
estimator; in a video or webcam stream person ids come from
:class:`~evopose_sdk.tracking.ByteTracker` and keypoints are smoothed per track with the
One-Euro filter (:class:`~evopose_sdk.smoothing.KeypointSmoother`). The images of a folder
are photos, each estimated alone: no tracking, no smoothing, the detector on every image, and
the flip test (unless the estimator's ``flip_test`` says otherwise), so each image's result
equals ``estimator(image)``.

With ``detect_every=k`` the person detector runs on frames 0, k, 2k, ...; on the frames
between, each person's crop comes from the previous frame's keypoints (their extent,
padded), so the pose network tracks the person and the detector cost is paid once in k
frames. If the previous frame has nobody (or another size), the detector runs anyway.

Where the parts live: :mod:`~evopose_sdk.frame_sources` opens and reads the sources;
:mod:`~evopose_sdk.follow` runs the detector on its schedule and makes the keypoint boxes
that follow people between detector frames; :mod:`~evopose_sdk.background` runs the
decoding and detection ahead in a worker thread. This module joins them to the estimator
(:class:`VideoEstimator`, what it needs of one), the tracker and the smoother.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from evopose_sdk.background import BackgroundIterator
from evopose_sdk.follow import detector_frame, keypoint_boxes, scheduled_frames
from evopose_sdk.frame_sources import IMAGE_SUFFIXES, FrameInfo, FrameSource, open_source
from evopose_sdk.smoothing import KeypointSmoother
from evopose_sdk.tracking import ByteTracker, DetectorGapFiller

if TYPE_CHECKING:
    from evopose_sdk.result import PoseResult

__all__ = ["FrameInfo", "FrameSource", "VideoEstimator", "open_source", "stream",
           "stream_with_info", "keypoint_boxes", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

#: ``detect_every`` when not given, for a video file or a webcam: the person detector runs
#: on every third frame and crops follow the keypoints in between (the default mode of the
#: README's speed table). Image folders and single images default to 1: their frames need
#: not be related.
DEFAULT_DETECT_EVERY = 3



class VideoEstimator(Protocol):
    """What :func:`stream` needs of an estimator; :class:`~evopose_sdk.PoseEstimator` has it.

    The detector and the pose network are separate calls, so that the detector can run ahead
    on a worker thread and the crops between detector frames can follow the keypoints.
    ``flip_test`` (None: the estimator's own setting) turns the flip test on or off.
    """

    def flip_for(self, kind: str) -> bool:
        """Whether frames of a source ``kind`` (``"video"``, ``"images"``, ``"webcam"``) get
        the flip test."""
        ...

    def detect_every_for(self, kind: str) -> int:
        """How often the detector runs on frames of a source ``kind`` when not told."""
        ...

    def detect(self, image_bgr: np.ndarray, *, flip_test: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes_xyxy (n, 4) and scores (n,) of a frame."""
        ...

    def estimate_detections(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray,
                            box_scores: np.ndarray, detect_ms: float = 0.0, *,
                            flip_test: bool | None = None) -> PoseResult:
        """The people of a frame for boxes :meth:`detect` returned (top ones, OKS-NMS)."""
        ...

    def estimate_boxes(self, image: np.ndarray, boxes_xyxy: np.ndarray,
                       box_scores: np.ndarray | None = None, *,
                       flip_test: bool | None = None) -> PoseResult:
        """One person per box, in box order (no detector, no NMS)."""
        ...


def _make_smoother(smoothing: Any) -> KeypointSmoother | None:
    if smoothing is None or smoothing is False:
        return None
    if smoothing is True or (isinstance(smoothing, str) and smoothing.lower() in ("one-euro", "oneeuro", "one_euro")):
        return KeypointSmoother()
    if isinstance(smoothing, KeypointSmoother):
        return smoothing
    raise ValueError(f"smoothing must be True, False/None, 'one-euro' or a KeypointSmoother; "
                     f"received {smoothing!r}")


def stream_with_info(
    estimator: VideoEstimator,
    source: str | int | os.PathLike | FrameSource,
    *,
    detect_every: int | None = None,
    smoothing: bool | str | KeypointSmoother | None = None,
    tracking: bool | ByteTracker | None = None,
    max_frames: int | None = None,
    keypoint_box_threshold: float = 0.2,
    fps: float | None = None,
    pipeline: bool = True,
) -> Iterator[tuple[FrameInfo, np.ndarray, PoseResult]]:
    """Like :func:`stream`, yielding ``(FrameInfo, frame_bgr, PoseResult)``."""
    if detect_every is not None and (not isinstance(detect_every, (int, np.integer))
                                     or detect_every < 1):
        raise ValueError(f"detect_every must be an integer >= 1; received {detect_every!r}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None; received {max_frames}")
    src = open_source(source, fps=fps)
    photos = src.kind == "images"  # unrelated photos: nothing carries over between them
    if tracking is None:
        tracking = not photos
    if smoothing is None:
        smoothing = tracking is not False and not photos
    tracker = tracking if isinstance(tracking, ByteTracker) else (ByteTracker() if tracking else None)
    filler = DetectorGapFiller() if tracker is not None else None  # people the detector misses
    smoother = _make_smoother(smoothing)
    if smoother is not None and tracker is None:
        logger.warning("smoothing needs tracking (it filters each track); smoothing is off")
        smoother = None
    if detect_every is None:  # the estimator's (its preset's, else by source)
        detect_every = estimator.detect_every_for(src.kind)
    elif photos and tracker is None and detect_every > 1:  # no crops from another photo
        logger.info("images are estimated alone: the detector runs on every image "
                    "(detect_every=%d applies to a video or tracked frames)", detect_every)
        detect_every = 1
    # the estimator's flip test for this kind of source (photos: on by default)
    flip = {"flip_test": estimator.flip_for(src.kind)}
    detector_lock = threading.Lock()  # one detector call at a time (cv2.dnn is not re-entrant)
    frames = scheduled_frames(src, estimator, detect_every, max_frames, detector_lock, flip)
    if pipeline:
        frames = BackgroundIterator(frames, depth=4)  # hides a detector frame (~2 pose frames)
    previous: PoseResult | None = None
    try:
        for info, frame, detections, decode_ms in frames:
            detected = None if detections is None else detections[0]  # detector boxes
            known = None  # track ids known from the crops that followed the keypoints
            if detections is not None:
                result, known = detector_frame(estimator, frame, detections, previous, filler,
                                               keypoint_box_threshold, flip)
            elif (previous is None or len(previous) == 0
                    or tuple(previous.image_hw) != frame.shape[:2]):  # off-schedule detection
                t0 = time.perf_counter()
                with detector_lock:
                    boxes, scores = estimator.detect(frame, **flip)
                detected = boxes
                result = estimator.estimate_detections(frame, boxes, scores,
                                                       (time.perf_counter() - t0) * 1e3, **flip)
            else:
                boxes = keypoint_boxes(previous, keypoint_box_threshold)
                result = estimator.estimate_boxes(frame, boxes, box_scores=previous.box_scores,
                                                  **flip)
                known = previous.track_ids  # one result per box, in order
            speed = {"decode": decode_ms, **result.speed_ms}
            if tracker is not None:
                t0 = time.perf_counter()
                result.track_ids = tracker.update(result.boxes_xyxy, result.box_scores,
                                                  known_ids=known)
                if filler is not None:
                    filler.update(result, detected)
                speed["track"] = (time.perf_counter() - t0) * 1e3
            if smoother is not None:
                t0 = time.perf_counter()
                result.keypoints = smoother(result.keypoints, result.track_ids, info.time_s)
                speed["smooth"] = (time.perf_counter() - t0) * 1e3
            result.speed_ms = speed
            previous = result
            yield info, frame, result
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # stops and joins the background thread before the source is closed
        src.close()


def stream(
    estimator: VideoEstimator,
    source: str | int | os.PathLike | FrameSource,
    *,
    detect_every: int | None = None,
    smoothing: bool | str | KeypointSmoother | None = None,
    tracking: bool | ByteTracker | None = None,
    max_frames: int | None = None,
    keypoint_box_threshold: float = 0.2,
    fps: float | None = None,
    pipeline: bool = True,
) -> Iterator[tuple[np.ndarray, PoseResult]]:
    """Run ``estimator`` over a video, image folder or webcam; yield ``(frame_bgr, PoseResult)``.

    Args:
        estimator: a :class:`~evopose_sdk.PoseEstimator`, or any object with the methods of
            :class:`VideoEstimator`.
        source: video path, image folder, image path, webcam index (``0`` / ``"0"``) or a
            :class:`FrameSource`.
        detect_every: run the person detector every k frames; in between, crops come from
            the previous frame's keypoints (see :func:`keypoint_boxes`). None (default):
            the estimator's ``detect_every_for(kind)`` (its ``detect_every`` option or
            preset for a video or webcam, else :data:`DEFAULT_DETECT_EVERY`, 3; 1 for images).
        smoothing: ``True`` / ``"one-euro"`` for One-Euro smoothing of keypoints per track,
            ``False`` for raw keypoints, or a configured :class:`KeypointSmoother`. None
            (default): by source, on for a video or webcam (with tracking), off for images.
        tracking: ``True`` for persistent ``track_ids`` (ByteTrack-style), ``False`` for -1
            ids, or a configured :class:`~evopose_sdk.tracking.ByteTracker`. None (default):
            by source, on for a video or webcam, off for images (photos are unrelated; pass
            True for a folder of video frames).
        max_frames: stop after this many frames.
        keypoint_box_threshold: keypoint score needed to count in a keypoint-derived box.
        fps: frame rate for image folders, or to override the container's.
        pipeline: decode and detect frame t+1 in a worker thread while the pose network
            runs on frame t (same results, in order, no frame dropped); False runs every
            stage on the calling thread.

    Yields:
        ``(frame_bgr (H, W, 3) uint8, PoseResult)``; ``speed_ms`` gains ``"decode"``,
        ``"track"`` and ``"smooth"`` stages (``"decode"`` and ``"detect"`` overlap the pose
        stages when ``pipeline`` is on).

    Raises:
        VideoError: the source is missing or unreadable (raised at the first ``next()``).
    """
    for _, frame, result in stream_with_info(
            estimator, source, detect_every=detect_every, smoothing=smoothing,
            tracking=tracking, max_frames=max_frames,
            keypoint_box_threshold=keypoint_box_threshold, fps=fps, pipeline=pipeline):
        yield frame, result
