"""Frame sources for :mod:`~evopose_sdk.video`: a video file, a folder of images (sorted by
name), one image file, or a webcam index (``0`` or ``"0"``), each opened and proved readable
up front (:func:`open_source`) and iterated as ``(FrameInfo, frame_bgr)``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.backends import native_stderr_to_log
from evopose_sdk.errors import EvoPoseError, VideoError
from evopose_sdk.io import read_image

__all__ = ["IMAGE_SUFFIXES", "FrameInfo", "FrameSource", "open_source"]

logger = logging.getLogger(__name__)


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
