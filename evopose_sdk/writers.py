"""Atomic output writers: annotated video, annotated images and JSON lines.

Every writer writes to a hidden temporary path next to its destination and renames it
into place only in :meth:`close` after a complete run; :meth:`abort` (called on any
exception, including ``KeyboardInterrupt``, when used as a context manager) deletes the
temporary output, so a destination path holds a whole file or nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_temp_path, publish
from evopose_sdk.errors import VideoError

__all__ = ["AtomicVideoWriter", "JsonLinesWriter", "ImageFolderWriter", "h264_available"]

logger = logging.getLogger(__name__)


def _temp_path(final: Path, *, directory: bool = False) -> Path:
    try:
        return atomic_temp_path(final, directory=directory)
    except OSError as exc:
        raise VideoError(exc.strerror or str(exc)) from None


class _AtomicBase:
    """Context-manager plumbing: close on success, abort on any exception."""

    path: Path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def h264_available() -> bool:
    """Whether PyAV (``pip install 'evopose-sdk[video]'``) and its bundled FFmpeg's libx264
    encoder are installed."""
    try:
        import av
        import av.codec

        av.codec.Codec("libx264", "w")
        return True
    except Exception:  # ImportError, or an FFmpeg build without libx264
        return False


class _H264Encoder:
    """H.264 (libx264, yuv420p, ``+faststart``) in an mp4 through PyAV: plays in browsers
    and notebooks. Frames of odd width or height get one black row/column (yuv420p needs even
    sizes)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], crf: int,
                 preset: str) -> None:
        from fractions import Fraction

        import av

        self._container = av.open(str(path), mode="w", format="mp4",
                                  options={"movflags": "+faststart"})
        self._stream = self._container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001))
        self._pad = (size[0] % 2, size[1] % 2)
        self._stream.width, self._stream.height = size[0] + self._pad[0], size[1] + self._pad[1]
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(int(crf)), "preset": preset}
        self._frame = av.VideoFrame

    def write(self, frame_bgr: np.ndarray) -> None:
        if any(self._pad):
            frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, self._pad[1], 0, self._pad[0],
                                           cv2.BORDER_CONSTANT, value=(0, 0, 0))
        for packet in self._stream.encode(self._frame.from_ndarray(frame_bgr, format="bgr24")):
            self._container.mux(packet)

    def release(self) -> None:
        try:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                self._container.mux(packet)
        finally:
            self._container.close()


class AtomicVideoWriter(_AtomicBase):
    """An annotated video that appears at ``path`` only when closed after a full run.

    ``.mp4`` / ``.m4v`` / ``.mov``: H.264 (libx264, yuv420p) through PyAV's bundled FFmpeg
    (``pip install 'evopose-sdk[video]'``), which browsers, notebooks and phones play; at the
    default quality (crf 23, preset superfast) demo.mp4's annotated copy is about half the
    source's size. Without PyAV: OpenCV's ``mp4v`` (MPEG-4 part 2), with a warning that
    browsers do not play it. ``.avi``: ``MJPG``; ``.mkv``: ``mp4v``.

    Args:
        path: destination.
        fps: frames per second written in the container.
        fourcc: a four-character OpenCV codec code: OpenCV writes the file with it (no H.264).
        crf, preset: libx264's quality (lower crf: better and larger) and speed preset.

    The frame size is taken from the first frame; later frames must match it.
    """

    _DEFAULT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG",
                       ".mkv": "mp4v"}
    _H264_SUFFIXES = (".mp4", ".m4v", ".mov")

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None,
                 crf: int = 23, preset: str = "superfast") -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"output folder does not exist: {self.path.parent}")
        suffix = self.path.suffix.lower()
        self.fourcc = fourcc or self._DEFAULT_FOURCC.get(suffix)
        if self.fourcc is None:
            raise VideoError(f"unsupported video suffix {suffix!r} for {self.path}; "
                             f"use one of {sorted(self._DEFAULT_FOURCC)}")
        #: "h264" (PyAV) or the OpenCV fourcc the file is written with
        self.codec = self.fourcc
        if fourcc is None and suffix in self._H264_SUFFIXES:
            if h264_available():
                self.codec = "h264"
            else:
                logger.warning("writing %s as mp4v, which browsers and notebooks do not play: "
                               "H.264 needs PyAV (pip install 'evopose-sdk[video]')",
                               self.path.name)
        self.crf, self.preset = crf, preset
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self._tmp: Path | None = None
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one HxWx3 uint8 BGR frame."""
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
            raise VideoError(f"video frames must be HxWx3 uint8; received {frame_bgr.shape} "
                             f"{frame_bgr.dtype}")
        size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if self._writer is None:
            self._tmp = _temp_path(self.path)
            self._writer = self._open(size)
            self._size = size
        elif size != self._size:
            raise VideoError(f"frame size {size} differs from the first frame's {self._size}")
        self._writer.write(frame_bgr)
        self.frames_written += 1

    def _open(self, size: tuple[int, int]) -> Any:
        if self.codec == "h264":
            try:
                return _H264Encoder(self._tmp, self.fps, size, self.crf, self.preset)
            except Exception as exc:  # PyAV/FFmpeg's own errors (av.FFmpegError, ValueError)
                self.abort()
                raise VideoError(f"cannot write H.264 video to {self.path}: {exc}") from None
        writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc),
                                 self.fps, size)
        if not writer.isOpened():
            self.abort()
            raise VideoError(f"OpenCV cannot write {self.fourcc!r} video to {self.path}")
        return writer

    def close(self) -> None:
        """Finish the file and move it to ``path``; no file is made if nothing was written."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.release()
        publish(self._tmp, self.path)
        self._tmp = None
        logger.info("wrote %s (%d frames, %s)", self.path, self.frames_written, self.codec)

    def abort(self) -> None:
        """Drop the partial output."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with contextlib.suppress(Exception):  # a half-written container may not close
                writer.release()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class JsonLinesWriter(_AtomicBase):
    """One JSON object per line, moved to ``path`` only when closed after a full run."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"output folder does not exist: {self.path.parent}")
        self._tmp: Path | None = _temp_path(self.path)
        self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115 - closed in close/abort
        self.lines_written = 0

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            raise VideoError(f"{self.path} is already closed")
        self._fh.write(json.dumps(record, separators=(",", ":"), allow_nan=False))
        self._fh.write("\n")
        self.lines_written += 1

    def close(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        publish(self._tmp, self.path)
        self._tmp = None
        logger.info("wrote %s (%d lines)", self.path, self.lines_written)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


class ImageFolderWriter(_AtomicBase):
    """Annotated images into a folder that appears at ``path`` only after a full run.

    Images are encoded with ``cv2.imencode`` by the suffix of the name given to
    :meth:`write` (``.jpg``, ``.png``...). An existing folder at ``path`` is replaced
    on :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"output folder does not exist: {self.path.parent}")
        self._tmp: Path | None = _temp_path(self.path, directory=True)
        self.images_written = 0

    def write(self, name: str, image_bgr: np.ndarray) -> None:
        if self._tmp is None:
            raise VideoError(f"{self.path} is already closed")
        name = Path(name).name
        ok, buf = cv2.imencode(Path(name).suffix or ".jpg", image_bgr)
        if not ok:
            raise VideoError(f"OpenCV cannot encode {name}")
        (self._tmp / name).write_bytes(buf.tobytes())
        self.images_written += 1

    def close(self) -> None:
        if self._tmp is None:
            return
        if self.path.is_dir():
            shutil.rmtree(self.path)
        publish(self._tmp, self.path)
        self._tmp = None
        logger.info("wrote %s (%d images)", self.path, self.images_written)

    def abort(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
