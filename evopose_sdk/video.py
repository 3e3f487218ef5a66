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
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from evopose_sdk.backends import native_stderr_to_log
from evopose_sdk.background import BackgroundIterator
from evopose_sdk.errors import EvoPoseError, VideoError
from evopose_sdk.io import read_image
from evopose_sdk.smoothing import KeypointSmoother
from evopose_sdk.tracking import ByteTracker, DetectorGapFiller

if TYPE_CHECKING:
    from evopose_sdk.result import PoseResult

__all__ = ["FrameInfo", "FrameSource", "open_source", "stream", "stream_with_info",
           "keypoint_boxes", "IMAGE_SUFFIXES"]

logger = logging.getLogger(__name__)

#: ``detect_every`` when not given, for a video file or a webcam: the person detector runs
#: on every third frame and crops follow the keypoints in between (the default mode of the
#: README's speed table). Image folders and single images default to 1: their frames need
#: not be related.
DEFAULT_DETECT_EVERY = 3

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FrameInfo:
    """Where a frame came from: ``index`` (0-based), ``time_s`` (seconds from the start,
    from the video clock or ``index / fps``) and ``name`` (image file name, or "")."""

    index: int
    time_s: float
    name: str = ""


class FrameSource:
    """Iterable of ``(FrameInfo, frame_bgr)`` from a video file, image folder, image or webcam.

    Attributes:
        kind: ``"video"``, ``"images"`` or ``"webcam"``.
        name: a short name for output files (file stem, folder name, ``webcam0``).
        path: the source path (None for a webcam).
        fps: frames per second (the container's; 30 when unknown or for images).
        frame_count: number of frames if known, else -1.
        frame_hw: (height, width) of the first frame.
        skipped: ``(file name, reason)`` of each image of a folder that could not be read
            (filled while iterating; each is also logged as a warning).

    Use :func:`open_source` to make one; it checks the source is readable up front.
    """

    def __init__(self, kind: str, name: str, path: Path | None, fps: float, frame_count: int,
                 frame_hw: tuple[int, int], cap: cv2.VideoCapture | None = None,
                 images: list[Path] | None = None, first: np.ndarray | None = None) -> None:
        self.kind, self.name, self.path = kind, name, path
        self.fps, self.frame_count, self.frame_hw = fps, frame_count, frame_hw
        self._cap, self._images, self._first = cap, images, first
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[tuple[FrameInfo, np.ndarray]]:
        if self._images is not None:
            yield from self._iter_images()
        else:
            yield from self._iter_capture()

    def _iter_images(self) -> Iterator[tuple[FrameInfo, np.ndarray]]:
        index = 0
        for p in self._images or []:
            try:
                image = read_image(p)
            except EvoPoseError as exc:
                logger.warning("skipping %s", exc)
                self.skipped.append((p.name, str(exc)))
                continue
            yield FrameInfo(index, index / self.fps, p.name), image
            index += 1

    def _iter_capture(self) -> Iterator[tuple[FrameInfo, np.ndarray]]:
        cap = self._cap
        if cap is None:
            raise VideoError(f"{self.name} is closed")
        index, frame = 0, self._first
        self._first = None
        try:
            while True:
                if frame is None:
                    ok, frame = cap.read()
                    if not ok or frame is None:
                        break
                t_ms = cap.get(cv2.CAP_PROP_POS_MSEC) if self.kind == "video" else 0.0
                t = t_ms / 1000.0 if t_ms and t_ms > 0 and index > 0 else index / self.fps
                yield FrameInfo(index, t), frame
                index += 1
                frame = None
        finally:
            self.close()
        if 0 < self.frame_count and index < self.frame_count - 1:
            logger.warning("%s ended after %d of %d frames (truncated or corrupt?)",
                           self.path, index, self.frame_count)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FrameSource(kind={self.kind!r}, name={self.name!r}, fps={self.fps:.2f}, "
                f"frame_count={self.frame_count}, frame_hw={self.frame_hw})")


def _is_webcam(source: Any) -> bool:
    return isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()
                                       and not Path(source).exists())


def open_source(source: str | int | os.PathLike | FrameSource, fps: float | None = None) -> FrameSource:
    """Open a frame source and read its first frame to prove it is readable.

    Args:
        source: a video path, an image folder, an image path, a webcam index (int or
            digit string), or an already open :class:`FrameSource` (returned as is).
        fps: frame rate to assume for images (default 30) or to override the container's.

    Raises:
        VideoError: missing path, empty folder, or a file OpenCV cannot decode.
    """
    if isinstance(source, FrameSource):
        return source
    if _is_webcam(source):
        idx = int(source)
        with native_stderr_to_log(f"webcam {idx}", logging.DEBUG):  # "can't open camera..."
            cap = cv2.VideoCapture(idx)
            ok, first = (cap.read() if cap.isOpened() else (False, None))
        if not ok or first is None:
            cap.release()
            raise VideoError(f"cannot open webcam {idx}")
        rate = fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        return FrameSource("webcam", f"webcam{idx}", None, _valid_fps(rate), -1,
                           first.shape[:2], cap=cap, first=first)
    path = Path(os.fspath(source))
    if not path.exists():
        raise VideoError(f"source not found: {path}")
    if path.is_dir():
        images = sorted(p for p in path.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise VideoError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return _image_source(path, path.name or "images", images, fps)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _image_source(path, path.stem, [path], fps)
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty (0 bytes): {path}")
    # FFmpeg's own lines ("moov atom not found") become debug records: the error says it
    with native_stderr_to_log(path.name, logging.DEBUG):
        cap = cv2.VideoCapture(str(path))
        ok, first = (cap.read() if cap.isOpened() else (False, None))
    if not ok or first is None or first.ndim != 3:
        cap.release()
        raise VideoError(f"cannot read video {path}: not a video OpenCV can decode, or corrupt")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or -1)
    rate = fps or cap.get(cv2.CAP_PROP_FPS)
    return FrameSource("video", path.stem, path, _valid_fps(rate), count if count > 0 else -1,
                       first.shape[:2], cap=cap, first=first)


def _valid_fps(rate: float | None) -> float:
    return float(rate) if rate and math.isfinite(rate) and 0 < rate <= 1000 else 30.0


def _image_source(path: Path, name: str, images: list[Path], fps: float | None) -> FrameSource:
    first_hw = None
    reasons: list[str] = []
    for p in images:
        try:
            first_hw = read_image(p).shape[:2]
            break
        except EvoPoseError as exc:  # warned about again (and recorded) while iterating
            logger.debug("skipping %s", exc)
            reasons.append(str(exc))
    if first_hw is None:
        if len(images) == 1 and not path.is_dir():
            raise VideoError(reasons[0])  # the reason itself: "image file is empty (0 bytes)..."
        shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3
                                          else "")
        raise VideoError(f"none of the {len(images)} image(s) in {path} can be read: {shown}")
    return FrameSource("images", name, path, _valid_fps(fps), len(images), first_hw,
                       images=images)


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
    estimator: Any,
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
    if detect_every is None:  # the estimator's (its preset's), else by source
        detect_every = estimator.detect_every_for(src.kind) if hasattr(
            estimator, "detect_every_for") else (1 if photos else DEFAULT_DETECT_EVERY)
    elif photos and tracker is None and detect_every > 1:  # no crops from another photo
        logger.info("images are estimated alone: the detector runs on every image "
                    "(detect_every=%d applies to a video or tracked frames)", detect_every)
        detect_every = 1
    # the estimator's flip test for this kind of source (photos: on by default)
    flip = {"flip_test": estimator.flip_for(src.kind)} if hasattr(estimator, "flip_for") else {}
    staged = hasattr(estimator, "detect") and hasattr(estimator, "estimate_detections")
    detector_lock = threading.Lock()  # one detector call at a time (cv2.dnn is not re-entrant)
    frames = _decoded(src, estimator if staged else None, detect_every, max_frames, detector_lock,
                      flip)
    if pipeline and staged:
        frames = BackgroundIterator(frames, depth=4)  # hides a detector frame (~2 pose frames)
    previous: PoseResult | None = None
    try:
        for info, frame, detections, decode_ms in frames:
            detected = None if detections is None else detections[0]  # detector boxes
            known = None  # track ids known from the crops that followed the keypoints
            if detections is not None:
                result, known = _detected(estimator, frame, detections, previous, filler,
                                          keypoint_box_threshold, flip)
            elif not staged and (info.index % detect_every == 0 or previous is None
                                 or len(previous) == 0
                                 or tuple(previous.image_hw) != frame.shape[:2]):
                result = estimator.estimate(frame, **flip)
                result.image = None  # the frame is yielded beside it; results keep no frames
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


Detections = tuple[np.ndarray, np.ndarray, float]  # boxes_xyxy (n, 4), scores (n,), detect ms


def _detected(estimator: Any, frame: np.ndarray, detections: Detections,
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


def _decoded(src: FrameSource, estimator: Any, detect_every: int, max_frames: int | None,
             detector_lock: threading.Lock, flip: dict[str, bool] | None = None
             ) -> Iterator[tuple[FrameInfo, np.ndarray, Detections | None, float]]:
    """``(info, frame, detections, decode_ms)`` for each frame; ``detections`` on the
    detector's schedule (frames 0, k, 2k, ...) when ``estimator`` is given, else None;
    ``flip`` (``{"flip_test": ...}``) goes to its ``detect``."""
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
        if estimator is not None and info.index % detect_every == 0:
            with detector_lock:
                boxes, scores = estimator.detect(frame, **(flip or {}))
            detections = (boxes, scores, (time.perf_counter() - t1) * 1e3)
        yield info, frame, detections, (t1 - t0) * 1e3


def stream(
    estimator: Any,
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
        estimator: a :class:`~evopose_sdk.PoseEstimator` (needs ``estimate(frame)`` and
            ``estimate_boxes(frame, boxes_xyxy)``).
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
