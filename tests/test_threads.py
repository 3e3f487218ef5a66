"""One PoseEstimator shared by 8 threads (a web service) gives what serial calls give, bit for
bit, and never crashes: fp32 (ONNX Runtime) and int8 (LiteRT, whose interpreter is not
thread-safe) files, with the detector and with boxes given. Real photos."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from _video_helpers import sample

from evopose_sdk import PoseEstimator

THREADS = 8


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Eight real photos: bus.jpg and zidane.jpg, mirrored, cropped, shrunk, turned, grey."""
    bus, zidane = (cv2.imread(str(sample(n))) for n in ("bus.jpg", "zidane.jpg"))
    grey = cv2.cvtColor(cv2.cvtColor(bus, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return [bus, zidane, bus[:, ::-1].copy(), zidane[:, ::-1].copy(), bus[200:900].copy(),
            cv2.resize(zidane, (640, 360), interpolation=cv2.INTER_AREA),
            zidane[::-1, ::-1].copy(), grey]


def _in_threads(work) -> None:
    """``work(t)`` on THREADS threads started together; fails with the first errors raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        try:
            start.wait()
            work(t)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=600)
    assert not errors, errors[:3]


def _fingerprint(result) -> tuple:
    return tuple(np.asarray(getattr(result, k)).tobytes()
                 for k in ("boxes_xyxy", "box_scores", "keypoints", "scores"))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("detector", ["default", "boxes"])
def test_eight_threads_give_the_serial_results(photos, precision, detector):
    boxes = [np.array([[0, 0, p.shape[1], p.shape[0]], [p.shape[1] * 0.1, p.shape[0] * 0.2,
                                                         p.shape[1] * 0.6, p.shape[0] * 0.9]])
             for p in photos]
    with PoseEstimator("evopose2d-s-160", precision=precision, threads=2) as est:
        assert est.card.precision == precision

        def call(i: int):
            return est(photos[i], boxes=boxes[i] if detector == "boxes" else None)

        serial = [_fingerprint(call(i)) for i in range(len(photos))]
        assert sum(len(est(p)) for p in photos) >= 8  # people found, not empty results
        got: dict[tuple[int, int], tuple] = {}

        def worker(t: int) -> None:
            for round_ in range(2):  # each thread its own order, twice over
                for k in range(len(photos)):
                    i = (t * 3 + k + round_) % len(photos)
                    got[(t, round_ * 10 + i)] = _fingerprint(call(i))

        _in_threads(worker)
        assert len(got) == THREADS * 2 * len(photos)
        for (_, key), fingerprint in got.items():
            assert fingerprint == serial[key % 10], f"photo {key % 10} differs from serial"


def test_tflite_pool_gives_overlapping_calls_interpreters_of_their_own(photos):
    """LiteRT interpreters are not thread-safe: overlapping calls each take one of the pool's
    interpreters (more are made only while calls overlap), and give the serial heatmaps."""
    from evopose_sdk.backends import TFLiteBackend
    from evopose_sdk.registry import resolve_model

    model = resolve_model("evopose2d-s-160", backend="tflite", precision="int8").path
    with PoseEstimator(model, detector="whole-image") as est:  # crops of real photos
        batches = [est.pipeline.preprocess(p, np.array([[0, 0, p.shape[1], p.shape[0]],
                                                        [10, 20, 300, 350]][: 1 + i % 2]))
                   .images for i, p in enumerate(photos)]
    backend = TFLiteBackend(model, max_interpreters=4)
    serial = [backend.run(b) for b in batches]
    assert backend._made == 1  # serial calls keep the first interpreter

    def worker(t: int) -> None:
        for k in range(3 * len(batches)):
            i = (t + k) % len(batches)
            np.testing.assert_array_equal(backend.run(batches[i]), serial[i])

    _in_threads(worker)
    assert 1 < backend._made <= 4
