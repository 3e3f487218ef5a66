"""The one background mechanism (:mod:`evopose_sdk.background`) in both directions, on real
frames of the sample video: the iterator that decodes ahead of the caller (``stream()``'s
decode + detect worker) and the sink that writes behind it (``evopose-infer``'s output
thread). Order, the depth bound, errors on the caller's thread, and stopping without a hang.
The sink's own test of order and errors is in test_video.py; the pipelined stream's results
equal the sequential ones there too."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _video_helpers import sample

from evopose_sdk.background import BackgroundIterator, BackgroundSink
from evopose_sdk.errors import VideoError
from evopose_sdk.frame_sources import open_source


def _frames(n: int):
    src = open_source(sample("demo.mp4"))
    try:
        for _, (_, frame) in zip(range(n), src, strict=False):
            yield frame
    finally:
        src.close()


def test_iterator_gives_the_frames_in_order_from_its_own_thread():
    seen: list[str] = []

    def decoded():
        for frame in _frames(12):
            seen.append(threading.current_thread().name)
            yield frame

    got = list(BackgroundIterator(decoded(), depth=3))
    want = list(_frames(12))
    assert len(got) == 12 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert set(seen) == {"evopose-decode-detect"}


def test_iterator_runs_at_most_depth_ahead_and_stops_when_closed():
    produced: list[int] = []

    def decoded():
        for i, frame in enumerate(_frames(40)):
            produced.append(i)
            yield frame

    it = BackgroundIterator(decoded(), depth=2)
    next(it)
    deadline = time.monotonic() + 60
    while len(produced) < 4 and time.monotonic() < deadline:  # 1 taken, 2 queued, 1 waiting
        time.sleep(0.01)
    time.sleep(0.2)
    assert len(produced) == 4, produced
    it.close()
    assert not it._thread.is_alive()
    with pytest.raises(StopIteration):
        next(it)
    assert len(produced) == 4  # nothing decoded after close


def test_iterator_raises_the_workers_error_in_order():
    def decoded():
        yield from _frames(3)
        raise VideoError("frame 3 is corrupt")

    it = BackgroundIterator(decoded())
    assert [f.shape for f in (next(it), next(it), next(it))] == [(994, 1768, 3)] * 3
    with pytest.raises(VideoError, match="frame 3 is corrupt"):
        next(it)
    assert not it._thread.is_alive()


def test_sink_writes_every_frame_in_order_or_stops_at_once():
    sums: list[int] = []
    frames = list(_frames(10))
    with BackgroundSink(lambda i, f: sums.append((i, int(f.sum()))), depth=2) as sink:
        for i, frame in enumerate(frames):
            sink.put(i, frame)
    assert sums == [(i, int(f.sum())) for i, f in enumerate(frames)]

    gate = threading.Event()
    done: list[int] = []

    def slow(i: int, frame: np.ndarray) -> None:
        gate.wait(30)
        done.append(i)

    sink = BackgroundSink(slow, depth=2)
    for i in range(3):  # one in hand, two queued: the queue is full
        sink.put(i, frames[i])
    gate.set()
    sink.abort()  # drops what is queued, joins the worker
    assert not sink._thread.is_alive() and len(done) <= 3
    with pytest.raises(VideoError, match="output thread has stopped"):
        sink.put(9, frames[9])
