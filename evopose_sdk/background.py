"""Work on a background thread, handed over through a bounded queue: the one mechanism the
package uses for it, in its two directions.

- :class:`BackgroundIterator`: the worker runs an iterator up to ``depth`` items ahead of the
  caller. Video decoding and the person detector (OpenCV and ONNX Runtime release the GIL)
  run for frame t+1 while the pose network runs for frame t.
- :class:`BackgroundSink`: the worker calls ``fn(*item)`` for each item the caller puts.
  ``evopose-infer`` draws, encodes and writes frame t while the pose network runs on t+1.

Either way at most ``depth`` items wait, items keep their order, an exception of the worker
is raised again on the caller's thread, and stopping never leaves a thread blocked.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from evopose_sdk.errors import VideoError

__all__ = ["BackgroundIterator", "BackgroundSink"]

#: How often a blocked hand-off looks at the stop flag (seconds).
_POLL_S = 0.05


class _Worker:
    """A daemon thread running ``self._work()``, a queue of at most ``depth`` items between
    it and the caller, and a stop flag that every blocking hand-off obeys."""

    _END = object()

    def __init__(self, depth: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def _work(self) -> None:  # pragma: no cover - each kind defines its own
        raise NotImplementedError

    def _put(self, item: Any) -> bool:
        """Queue ``item``, waiting for a free slot until stopped; False if stopped (also
        when the slot was freed by the stop itself: the producer goes no further)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return not self._stop.is_set()
            except queue.Full:
                continue
        return False

    def _halt(self) -> None:
        """Stop the worker and join it, dropping what is queued: a worker waiting for an item
        gets the end mark, one waiting for a free slot sees the stop flag."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.put_nowait(self._END)
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
            self._thread.join(timeout=_POLL_S)


class BackgroundIterator(_Worker):
    """Run ``items`` in a worker thread, up to ``depth`` items ahead; items, and an exception
    it raises, come out in order. :meth:`close` stops and joins the worker (the iterator is
    left where it was)."""

    def __init__(self, items: Iterator[Any], depth: int = 2,
                 name: str = "evopose-decode-detect") -> None:
        super().__init__(depth, name)
        self._items = items
        self._thread.start()

    def _work(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(exc)

    def __iter__(self) -> BackgroundIterator:
        return self

    def __next__(self) -> Any:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stop the worker and wait for it."""
        self._halt()


class BackgroundSink(_Worker):
    """Call ``fn(*item)`` for each item :meth:`put`, in order, on a worker thread.

    At most ``depth`` items wait; :meth:`put` blocks when they do. An exception raised by
    ``fn`` is raised again by the next :meth:`put` or by :meth:`close`; later items are
    dropped. As a context manager, a normal exit waits for every item (:meth:`close`) and an
    exception stops the worker without finishing them (:meth:`abort`), so the writers' own
    exits then publish or drop the files.
    """

    def __init__(self, fn: Callable[..., None], depth: int = 4,
                 name: str = "evopose-write") -> None:
        super().__init__(depth, name)
        self._fn = fn
        self._error: BaseException | None = None
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
        if not self._thread.is_alive() or not self._put(item):
            raise VideoError("the output thread has stopped")

    def close(self) -> None:
        """Wait until every queued item is done; raises what a call raised."""
        if self._thread.is_alive() and not self._stop.is_set():
            self._queue.put(self._END)  # the worker takes every item: a slot frees
            self._thread.join()
        else:
            self._halt()
        self._raise()

    def abort(self) -> None:
        """Stop the worker, dropping the items still queued."""
        self._halt()

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
