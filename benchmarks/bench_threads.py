"""Throughput of one shared PoseEstimator against the number of threads calling it.

A web service calls one estimator from several request threads. This times photos per
second with 1, 2, 4 and 8 threads sharing one ``PoseEstimator``, for the fp32 ONNX file (ONNX
Runtime sessions run calls concurrently) and the int8 TFLite file (a LiteRT interpreter is
not thread-safe, so the backend runs one call at a time), with the person detector and with
boxes given, and checks every threaded result against the serial one (bit for bit).

    python benchmarks/bench_threads.py                      # ~3 min on 2 cores
    python benchmarks/bench_threads.py --threads 1,2,4,8,16 --calls 48 --model evopose2d-s-160

Prints a markdown table and writes ``benchmarks/results/threads_<host>_<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk import PoseEstimator
from evopose_sdk.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("bus.jpg", "zidane.jpg", "messi5.jpg", "basketball1.png", "basketball2.png")


def load_photos(folder: Path) -> list[np.ndarray]:
    """The sample photos found in ``folder`` (at least bus.jpg and zidane.jpg)."""
    photos = [cv2.imread(str(folder / n)) for n in PHOTOS if (folder / n).is_file()]
    if len(photos) < 2:
        sys.exit(f"bench_threads: photos missing in {folder}: run python tools/fetch_samples.py")
    return photos


def _key(result) -> bytes:
    return result.keypoints.tobytes() + result.boxes_xyxy.tobytes() + result.scores.tobytes()


def run_case(est: PoseEstimator, photos: list[np.ndarray], n_threads: int, calls: int,
             boxes: bool, serial: list[bytes]) -> dict:
    """``calls`` estimates spread over ``n_threads`` threads: photos/s, and whether every
    result equals the serial one."""
    box_of = [np.array([[0, 0, p.shape[1], p.shape[0]]], np.float32) for p in photos]
    done: list[tuple[int, bytes]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n_threads + 1)

    def worker(t: int) -> None:
        start.wait()
        for k in range(t, calls, n_threads):
            i = k % len(photos)
            try:
                r = est(photos[i], boxes=box_of[i] if boxes else None)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                done.append((i, _key(r)))

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    same = not errors and all(key == serial[i] for i, key in done)
    return dict(threads=n_threads, calls=calls, wall_s=round(wall, 3),
                photos_per_s=round(len(done) / wall, 2), errors=len(errors),
                first_error=errors[0] if errors else None, same_as_serial=same)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="evopose2d-s", help="shipped model name")
    ap.add_argument("--precisions", default="fp32,int8", help="files of the model to time")
    ap.add_argument("--threads", default="1,2,4,8", help="thread counts")
    ap.add_argument("--calls", type=int, default=32, help="estimates per case")
    ap.add_argument("--samples", type=Path, default=REPO / ".samples", help="photo folder")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    args = ap.parse_args(argv)

    photos = load_photos(args.samples)
    counts = [int(x) for x in args.threads.split(",")]
    rows = []
    for precision in args.precisions.split(","):
        with PoseEstimator(args.model, precision=precision) as est:
            for boxes in (False, True):
                def call(p: np.ndarray, b: bool = boxes):
                    whole = np.array([[0, 0, p.shape[1], p.shape[0]]], np.float32)
                    return est(p, boxes=whole if b else None)

                call(photos[0])  # warm-up
                serial = [_key(call(p)) for p in photos]
                for n in counts:
                    row = run_case(est, photos, n, args.calls, boxes, serial)
                    row.update(model=args.model, file=est.model_path.name, precision=precision,
                               detector="boxes given" if boxes else "default (SSD)")
                    rows.append(row)
                    print(f"{row['file']:28s} {row['detector']:14s} {n:2d} threads: "
                          f"{row['photos_per_s']:6.2f} photos/s, same as serial: "
                          f"{row['same_as_serial']}", file=sys.stderr)

    head = "| file | detector | threads | photos/s | x 1 thread | errors | same as serial |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        base = next(x for x in rows if x["file"] == r["file"] and x["detector"] == r["detector"]
                    and x["threads"] == counts[0])
        lines.append(f"| {r['file']} | {r['detector']} | {r['threads']} | {r['photos_per_s']:.2f} "
                     f"| {r['photos_per_s'] / base['photos_per_s']:.2f} | {r['errors']} "
                     f"| {'yes' if r['same_as_serial'] else 'NO'} |")
    table = "\n".join(lines)
    print(table)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M")
    out = args.out or REPO / "benchmarks" / "results" / f"threads_{socket.gethostname()}_{stamp}.json"
    atomic_write_text(out, json.dumps(dict(
        machine=dict(cpus=os.cpu_count(), load_avg=os.getloadavg()), photos=len(photos),
        calls=args.calls, rows=rows, table=table), indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(r["same_as_serial"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
