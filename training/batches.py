"""Batches of top-down samples and loading them ahead of the trainer.

* :func:`epoch_order` mixes the sources by weight; it and each sample's augmentation are
  functions of (seed, epoch, position), so an epoch's batches do not depend on worker count
  or on where a run was resumed.
* :class:`KeypointBatches` is the workers' unit of work; :class:`BatchLoader` prefetches
  batches in order in a process (or thread) pool; :func:`make_pydataset` wraps the batches
  for ``model.fit``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections.abc import Mapping
from multiprocessing.pool import ThreadPool

import cv2
import numpy as np

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS
from evopose_sdk.training.samples import AugmentConfig, make_sample
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
                 sigma: float | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; received {batch_size}")
        self.records = records
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.stride = int(stride)
        if self.input_hw[0] % self.stride or self.input_hw[1] % self.stride:
            raise ValueError(f"input size {self.input_hw} is not divisible by stride {stride}")
        self.batch_size = int(batch_size)
        self.augment = AugmentConfig.from_any(augment)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sigma = sigma
        kset = records.keypoint_set
        self.flip_pairs = kset.flip_pairs if kset else COCO_FLIP_PAIRS
        self.upper_body = kset.upper_body if kset else None
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
        if self.augment.needs_other and len(r) > 1:
            j = int(rng.integers(len(r) - 1))
            j += j >= idx
            other = (read_image_rgb(r.image_paths[j]), r.boxes_xywh[j])
        return make_sample(image, r.boxes_xywh[idx], r.keypoints[idx], self.input_hw,
                           self.stride, flip_pairs=self.flip_pairs, upper_body=self.upper_body,
                           augment=self.augment, rng=rng, sigma=self.sigma, other=other)

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
    """The config's training batches of ``records`` (batch size, augmentation, seed, sigma)."""
    t = cfg["train"]
    return KeypointBatches(records, input_hw, stride, int(t["batch_size"]),
                          augment=cfg["data"]["augment"], seed=int(t["seed"]),
                          epoch=epoch, sigma=cfg["data"]["sigma"])


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

_WORKER_BATCHES: KeypointBatches | None = None


def _init_worker(batches: KeypointBatches) -> None:
    global _WORKER_BATCHES
    _WORKER_BATCHES = batches
    cv2.setNumThreads(1)


def _worker_batch(epoch: int, i: int):
    if _WORKER_BATCHES.epoch != epoch:
        _WORKER_BATCHES.set_epoch(epoch)
    return _WORKER_BATCHES.batch(i)


class BatchLoader:
    """Loads batches ahead of the trainer, in order, with bounded memory.

    ``workers = 0`` loads in the calling thread; otherwise a pool of ``workers`` processes
    (``spawn``: forking a process that already runs TensorFlow/OpenCV threads can deadlock)
    or threads lives as long as the loader. At most ``prefetch`` batches are in flight.
    Use as a context manager.
    """

    def __init__(self, batches: KeypointBatches, workers: int = 0,
                 use_multiprocessing: bool = True, prefetch: int = 4) -> None:
        self.batches = batches
        self.workers = max(int(workers), 0)
        self.use_multiprocessing = use_multiprocessing
        self.prefetch = max(int(prefetch), 1)
        self._pool = None

    def __enter__(self) -> BatchLoader:
        if self.workers > 0:
            if self.use_multiprocessing:
                self._pool = mp.get_context("spawn").Pool(
                    self.workers, initializer=_init_worker, initargs=(self.batches,))
            else:
                self._pool = ThreadPool(self.workers)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def _submit(self, epoch: int, i: int):
        if self.use_multiprocessing:
            return self._pool.apply_async(_worker_batch, (epoch, i))
        return self._pool.apply_async(_thread_batch, (self.batches, epoch, i))

    def iterate(self, epoch: int, start: int = 0, stop: int | None = None):
        """Yield ``(i, images, heatmaps, weights)`` for batches ``start..stop-1`` of ``epoch``."""
        self.batches.set_epoch(epoch)
        n = len(self.batches) if stop is None else min(int(stop), len(self.batches))
        if self._pool is None:
            for i in range(start, n):
                yield (i, *self.batches.batch(i))
            return
        pending = []
        nxt = start
        while nxt < n and len(pending) < self.prefetch:
            pending.append((nxt, self._submit(epoch, nxt)))
            nxt += 1
        while pending:
            i, res = pending.pop(0)
            out = res.get()
            if nxt < n:
                pending.append((nxt, self._submit(epoch, nxt)))
                nxt += 1
            yield (i, *out)


def _thread_batch(batches: KeypointBatches, epoch: int, i: int):
    # threads share one KeypointBatches; its epoch was set by iterate() before submitting
    return batches.batch(i)
