"""Batches of top-down samples and loading them ahead of the trainer.

* :func:`epoch_order` mixes the sources by weight; it and each sample's augmentation are
  functions of (seed, epoch, position), so an epoch's batches do not depend on worker count
  or on where a run was resumed.
* :class:`KeypointBatches` is the workers' unit of work; :class:`BatchLoader` prefetches
  batches in order in worker processes (or threads); :func:`make_pydataset` wraps the batches
  for ``model.fit``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import signal
import time
import traceback
from collections.abc import Mapping
from multiprocessing.pool import ThreadPool

import cv2
import numpy as np

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS
from evopose_sdk.training.pipeline import Context, Pipeline
from evopose_sdk.training.samples import AugmentConfig
from evopose_sdk.training.sources import PersonRecords, SourceSpec, read_image_rgb


def epoch_order(records: PersonRecords, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """Person indices of one epoch, from the source weights; deterministic in (seed, epoch).

    A source of weight ``w`` contributes ``floor(w)`` full copies plus a random
    ``frac(w)`` share of its people.
    """
    rng = np.random.default_rng((int(seed), int(epoch), 7919))
    parts = []
    for si, spec in enumerate(records.sources or [SourceSpec("", "", 1.0)]):
        idx = np.where(records.source == si)[0]
        if not len(idx):
            continue
        whole, frac = divmod(float(spec.weight), 1.0)
        parts.extend([idx] * int(whole))
        n_extra = int(round(frac * len(idx)))
        if n_extra:
            parts.append(rng.choice(idx, n_extra, replace=False) if shuffle else idx[:n_extra])
    order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if shuffle:
        order = rng.permutation(order)
    return order


def _pyd_base():
    import keras  # noqa: PLC0415  (keep batches.py importable without keras for workers' sake)

    return keras.utils.PyDataset


class KeypointBatches:
    """Top-down batches of one epoch as compact arrays (the workers' unit of work).

    ``batch(i)`` returns ``(images uint8 (B, h, w, 3), heatmaps float32 (B, h/s, w/s, K),
    weights float32 (B, K))``; ``len()`` drops a last partial batch when ``drop_last``.
    """

    def __init__(self, records: PersonRecords, input_hw: tuple[int, int], stride: int,
                 batch_size: int, *, augment: AugmentConfig | dict | bool | None = True,
                 seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_last: bool = True,
                 sigma: float | None = None, pipeline: list | Pipeline | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; received {batch_size}")
        self.records = records
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.stride = int(stride)
        if self.input_hw[0] % self.stride or self.input_hw[1] % self.stride:
            raise ValueError(f"input size {self.input_hw} is not divisible by stride {stride}")
        self.batch_size = int(batch_size)
        self.augment = AugmentConfig.from_any(augment)
        self.pipeline = (pipeline if isinstance(pipeline, Pipeline)
                         else Pipeline.from_config(pipeline, self.augment))
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sigma = sigma
        kset = records.keypoint_set
        self.flip_pairs = kset.flip_pairs if kset else COCO_FLIP_PAIRS
        self.upper_body = kset.upper_body if kset else None
        self.ctx = Context(self.input_hw, self.stride, self.flip_pairs, self.upper_body, sigma)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch: sample order and augmentation draws follow (seed, epoch)."""
        self.epoch = int(epoch)
        self.order = epoch_order(self.records, self.epoch, self.seed, self.shuffle)

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return self.input_hw[0] // self.stride, self.input_hw[1] // self.stride

    def sample(self, position: int) -> dict:
        """The sample at ``position`` of this epoch's order."""
        idx = int(self.order[position])
        rng = np.random.default_rng((self.seed, self.epoch, position, 104729))
        r = self.records
        image = read_image_rgb(r.image_paths[idx])
        other = None
        if self.pipeline.needs_other and len(r) > 1:
            j = int(rng.integers(len(r) - 1))
            j += j >= idx
            other = (read_image_rgb(r.image_paths[j]), r.boxes_xywh[j])
        return self.pipeline(self.ctx, image, r.boxes_xywh[idx], r.keypoints[idx], rng, other)

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        lo = i * self.batch_size
        hi = min(lo + self.batch_size, len(self.order))
        samples = [self.sample(p) for p in range(lo, hi)]
        return (np.stack([s["image"] for s in samples]),
                np.stack([s["heatmaps"] for s in samples]),
                np.stack([s["weights"] for s in samples]))


def make_batches(cfg: Mapping, records: PersonRecords, input_hw, stride: int,
                 epoch: int = 0) -> KeypointBatches:
    """The config's training batches of ``records`` (batch size, sample pipeline or
    augmentation, seed, sigma)."""
    t = cfg["train"]
    return KeypointBatches(records, input_hw, stride, int(t["batch_size"]),
                          augment=cfg["data"]["augment"], seed=int(t["seed"]),
                          epoch=epoch, sigma=cfg["data"]["sigma"],
                          pipeline=cfg["data"].get("pipeline"))


def make_pydataset(batches: KeypointBatches, workers: int = 1, use_multiprocessing: bool = False,
                   max_queue_size: int = 4):
    """Wrap :class:`KeypointBatches` as a ``keras.utils.PyDataset`` for ``model.fit``.

    Yields ``(images float32 (B, h, w, 3) 0-255, y_true (B, Hh, Wh, 2K))``; ``on_epoch_end``
    advances the epoch so the order stays a function of (seed, epoch).
    """
    base = _pyd_base()

    class _KeypointPyDataset(base):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                             max_queue_size=max_queue_size)
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            images, hms, weights = self.batches.batch(i)
            return images.astype(np.float32), HeatmapCodec.pack(hms, weights)

        def on_epoch_end(self):
            self.batches.set_epoch(self.batches.epoch + 1)

    return _KeypointPyDataset()


# --------------------------------------------------------------- prefetching (own loop)

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _worker_main(conn, batches: KeypointBatches) -> None:
    """A data worker: answer ``(epoch, i)`` with ``("ok", batch)`` or ``("error", exc)``.

    It ignores SIGINT and SIGTERM, which a terminal's Ctrl-C or ``kill -- -PGID`` also sends
    to it: the trainer decides when to stop (after a checkpoint) and then closes the pipe.
    It exits when the pipe closes, so no worker outlives a killed trainer.
    """
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent at start
    cv2.setNumThreads(1)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        epoch, i = task
        c0 = time.process_time()
        try:
            if batches.epoch != epoch:
                batches.set_epoch(epoch)
            reply = ("ok", (batches.batch(i), time.process_time() - c0))
        except Exception as exc:  # noqa: BLE001 - handed to the trainer, which raises it
            exc.add_note(f"in data worker {os.getpid()}, batch {i} of epoch {epoch}:\n"
                         f"{traceback.format_exc()}")
            reply = ("error", exc)
        try:
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError):  # an unpicklable error
                conn.send(("error", RuntimeError(f"{type(reply[1]).__name__}: {reply[1]}")))
        except (BrokenPipeError, OSError):
            return


class _WorkerProcesses:
    """``n`` spawned worker processes, one pipe each; task ``k`` goes to worker ``k % n``.

    Each worker answers its tasks in order, so replies come back in submission order with no
    lock shared between processes (a ``multiprocessing.Pool`` whose worker dies holding its
    queue's lock, as on a process-group SIGTERM, hangs ``terminate()`` forever). ``cpu_s``
    adds up the CPU seconds the workers spent on the batches received.
    """

    cpu_s = 0.0

    def __init__(self, n: int, batches: KeypointBatches) -> None:
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        self._sent = 0
        # start the workers with SIGINT/SIGTERM blocked (they inherit the mask) so a signal
        # in their start-up cannot kill them before they ignore it
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for _ in range(n):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(child, batches), daemon=True,
                                   name="evopose-data")
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
        except BaseException:
            self.close()
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def submit(self, epoch: int, i: int) -> int:
        """Queue batch ``i`` of ``epoch``; returns the worker that will answer."""
        k = self._sent % len(self._procs)
        self._sent += 1
        self._conns[k].send((int(epoch), int(i)))
        return k

    def receive(self, k: int):
        """The next reply of worker ``k``: its batch, or its error raised here."""
        try:
            status, value = self._conns[k].recv()
        except (EOFError, OSError):
            proc = self._procs[k]
            proc.join(1.0)
            raise RuntimeError(
                f"data worker {proc.pid} ended unexpectedly (exit code {proc.exitcode}); "
                "rerun with --workers 0 to see the error in the trainer itself") from None
        if status == "error":
            raise value
        batch, cpu_s = value
        self.cpu_s += cpu_s
        return batch

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipes (a worker exits on its next read or write), join, then kill."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            conn.close()
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            proc.join(max(deadline - time.monotonic(), 0.0))
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._conns, self._procs = [], []


class BatchLoader:
    """Loads batches ahead of the trainer, in order, with bounded memory.

    ``workers = 0`` loads in the calling thread; otherwise ``workers`` processes (``spawn``:
    forking a process that already runs TensorFlow/OpenCV threads can deadlock; they ignore
    SIGINT/SIGTERM and leave stopping to the trainer) or threads live as long as the loader.
    At most ``prefetch`` batches are in flight. Use as a context manager.
    """

    def __init__(self, batches: KeypointBatches, workers: int = 0,
                 use_multiprocessing: bool = True, prefetch: int = 4) -> None:
        self.batches = batches
        self.workers = max(int(workers), 0)
        self.use_multiprocessing = use_multiprocessing
        self.prefetch = max(int(prefetch), 1)
        self._procs: _WorkerProcesses | None = None
        self._threads: ThreadPool | None = None
        self._stale: list[int] = []  # workers owing a reply to an iteration left early
        self._closed_cpu_s = 0.0  # the workers' CPU seconds, kept after close()

    def __enter__(self) -> BatchLoader:
        if self.workers > 0:
            if self.use_multiprocessing:
                self._procs = _WorkerProcesses(self.workers, self.batches)
            else:
                self._threads = ThreadPool(self.workers)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    @property
    def data_cpu_s(self) -> float:
        """CPU seconds the worker processes spent making the batches received so far (0 when
        batches are made in this process, whose own CPU time then holds them)."""
        return self._procs.cpu_s if self._procs is not None else self._closed_cpu_s

    def close(self) -> None:
        if self._procs is not None:
            self._closed_cpu_s = self._procs.cpu_s
            self._procs.close()
            self._procs = None
        if self._threads is not None:
            self._threads.terminate()
            self._threads.join()
            self._threads = None
        self._stale = []

    def _submit(self, epoch: int, i: int):
        if self._procs is not None:
            return self._procs.submit(epoch, i)
        return self._threads.apply_async(_thread_batch, (self.batches, epoch, i))

    def _result(self, handle):
        if self._procs is not None:
            return self._procs.receive(handle)
        return handle.get()

    def iterate(self, epoch: int, start: int = 0, stop: int | None = None):
        """Yield ``(i, images, heatmaps, weights)`` for batches ``start..stop-1`` of ``epoch``."""
        self.batches.set_epoch(epoch)
        n = len(self.batches) if stop is None else min(int(stop), len(self.batches))
        if self._procs is None and self._threads is None:
            for i in range(start, n):
                yield (i, *self.batches.batch(i))
            return
        if self._procs is not None:  # replies owed to an iteration closed early come first
            for k in self._stale:
                self._procs.receive(k)
            self._stale = []
        pending = []
        nxt = start
        try:
            while nxt < n and len(pending) < self.prefetch:
                pending.append((nxt, self._submit(epoch, nxt)))
                nxt += 1
            while pending:
                i, handle = pending.pop(0)
                out = self._result(handle)
                if nxt < n:
                    pending.append((nxt, self._submit(epoch, nxt)))
                    nxt += 1
                yield (i, *out)
        finally:
            if self._procs is not None:
                self._stale = [handle for _, handle in pending]


def _thread_batch(batches: KeypointBatches, epoch: int, i: int):
    # threads share one KeypointBatches; its epoch was set by iterate() before submitting
    return batches.batch(i)
