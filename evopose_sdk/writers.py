"""Atomic output writers: annotated video, annotated images and JSON lines.

Every writer writes to a hidden temporary path next to its destination and renames it
into place only in :meth:`close` after a complete run; :meth:`abort` (called on any
exception, including ``KeyboardInterrupt``, when used as a context manager) deletes the
temporary output, so a destination path holds a whole file or nothing.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evopose_sdk.atomic import atomic_temp_path, publish
from evopose_sdk.errors import VideoError

__all__ = ["AtomicVideoWriter", "JsonLinesWriter", "ImageFolderWriter", "BackgroundSink"]

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


class AtomicVideoWriter(_AtomicBase):
    """``cv2.VideoWriter`` that appears at ``path`` only when closed after a full run.

    Args:
        path: destination (``.mp4`` uses the ``mp4v`` codec, ``.avi`` ``MJPG``).
        fps: frames per second written in the container.
        fourcc: four-character codec code overriding the default for the suffix.

    The frame size is taken from the first frame; later frames must match it.
    """

    _DEFAULT_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG",
                       ".mkv": "mp4v"}

    def __init__(self, path: str | os.PathLike, fps: float, fourcc: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoError(f"output folder does not exist: {self.path.parent}")
        suffix = self.path.suffix.lower()
        self.fourcc = fourcc or self._DEFAULT_FOURCC.get(suffix)
        if self.fourcc is None:
            raise VideoError(f"unsupported video suffix {suffix!r} for {self.path}; "
                             f"use one of {sorted(self._DEFAULT_FOURCC)}")
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        self._tmp: Path | None = None
        self._writer: cv2.VideoWriter | None = None
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
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc),
                                           self.fps, size)
            if not self._writer.isOpened():
                self.abort()
                raise VideoError(f"OpenCV cannot write {self.fourcc!r} video to {self.path}")
            self._size = size
        elif size != self._size:
            raise VideoError(f"frame size {size} differs from the first frame's {self._size}")
        self._writer.write(frame_bgr)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it to ``path``; no file is made if nothing was written."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        publish(self._tmp, self.path)
        self._tmp = None
        logger.info("wrote %s (%d frames)", self.path, self.frames_written)

    def abort(self) -> None:
        """Drop the partial output."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
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


class BackgroundSink:
    """Call ``fn(*item)`` for each item :meth:`put`, in order, on a worker thread.

    ``evopose-infer`` draws, encodes and writes frame t here while the pose network runs on
    frame t+1 (OpenCV's drawing and encoding release the GIL). At most ``depth`` items wait;
    :meth:`put` blocks when they do. An exception raised by ``fn`` is raised again by the next
    :meth:`put` or by :meth:`close`; later items are dropped. As a context manager, a normal
    exit waits for every item (:meth:`close`) and an exception stops the worker without
    finishing them (:meth:`abort`), so the writers' own exits then publish or drop the files.
    """

    _END = object()

    def __init__(self, fn: Callable[..., None], depth: int = 4,
                 name: str = "evopose-write") -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if self._error is not None or self._stop.is_set():
                continue  # drop: the consumer is told, or is leaving
            try:
                self._fn(*item)
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._stop.set()
            raise error

    def put(self, *item: Any) -> None:
        """Queue one call of ``fn(*item)``; raises what an earlier call raised."""
        self._raise()
        if not self._thread.is_alive():
            raise VideoError("the output thread has stopped")
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every queued item is done; raises what a call raised."""
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop the worker, dropping the items still queued."""
        self._stop.set()
        if self._thread.is_alive():
            self._queue.put(self._END)  # the worker drops items, so a slot frees quickly
            self._thread.join()

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
