"""ONNX Runtime vs OpenCV DNN vs OpenVINO on the shipped ONNX files, side by side.

For each shipped pose network (``models/*.onnx``) and the person detector
(``models/detectors/*.onnx``), every runtime at ``--threads`` threads:

* pose: ms per call and per crop at batch 1 and at vtest.avi's people per frame (the mean
  number of people the shipped detector finds in the first ``--frames`` frames, rounded),
  on real crops of those frames; the largest heatmap difference to ONNX Runtime;
* detector: ms per image (its file takes a batch of 1) on the same frames; the largest
  score / normalised-box difference to ONNX Runtime.

Runtimes are timed interleaved (one call of each in turn, ``--rounds`` rounds, median), so a
change in the machine's load hits all of them alike; the load average is recorded.
OpenVINO runs at f32 inference precision (logged as OpenVINO reports it).

    python benchmarks/bench_runtimes.py            # prints a table, writes results/runtimes_<host>_<date>.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import logging
import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from runtime_report import table  # beside this script (a script imports from its folder)

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.backends import make_backend
from evopose_sdk.card import ModelCard, card_path_for
from evopose_sdk.detectors import SSDPersonOnnxDetector
from evopose_sdk.topdown import box_affine, warp_crops

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnxruntime", "opencv", "openvino")
log = logging.getLogger("bench_runtimes")


def opencv_runner(path: Path, outputs: list[str], threads: int) -> Callable[[dict], list]:
    """OpenCV DNN (its own CPU backend) as ``feeds -> [outputs]``."""
    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, value in feeds.items():
            net.setInput(value, name)
        return list(net.forward(outputs))

    return run


def openvino_runner(path: Path, outputs: list[str], threads: int) -> Callable[[dict], list]:
    """OpenVINO (CPU, f32 inference precision) as ``feeds -> [outputs]``."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                          "INFERENCE_NUM_THREADS": threads})
    log.info("OpenVINO %s: inference precision %s, %s threads", path.name,
             compiled.get_property("INFERENCE_PRECISION_HINT"),
             compiled.get_property("INFERENCE_NUM_THREADS"))
    request = compiled.create_infer_request()

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer(feeds)
        return [np.array(result[name]) for name in outputs]

    return run


def interleaved_ms(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict]:
    """Per callable: median and min ms per call, and the median over rounds of its time over
    the first callable's in the same round (a paired ratio, robust to the machine's load
    drifting); timed one after another for ``rounds`` rounds after one warm-up call each."""
    for fn in calls.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    first = np.asarray(next(iter(times.values())))
    return {k: {"median": float(np.median(v)) * 1e3, "min": float(np.min(v)) * 1e3,
                "ratio": float(np.median(np.asarray(v) / first))} for k, v in times.items()}


def read_frames(video: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {video}: run `python tools/fetch_samples.py --all`")
    return frames


def bench_pose(path: Path, frames: list[np.ndarray], boxes: list[np.ndarray], batch: int,
               threads: int, rounds: int) -> list[dict]:
    """One row per runtime for the pose network ``path``."""
    card = ModelCard.load(card_path_for(path))
    hw = tuple(card.input_size)
    crops = np.concatenate([warp_crops(f, np.stack([box_affine(b, hw) for b in bx]), hw)
                            for f, bx in zip(frames, boxes, strict=True) if len(bx)])
    crops = crops[:batch].astype(np.float32)
    name_in, name_out = card.input_name, card.output_name
    ort_backend = make_backend(path, "onnxruntime", threads)
    cv_run = opencv_runner(path, [name_out], threads)
    ov_run = openvino_runner(path, [name_out], threads)
    runs = {"onnxruntime": ort_backend.run, "opencv": lambda x: cv_run({name_in: x})[0],
            "openvino": lambda x: ov_run({name_in: x})[0]}  # ONNX Runtime first: ratios to it
    ref = runs["onnxruntime"](crops)
    rows = []
    timings = {b: interleaved_ms({k: (lambda r=r, x=crops[:b]: r(x)) for k, r in runs.items()},
                                 rounds) for b in (1, batch)}
    for rt in RUNTIMES:
        diff = float(np.abs(runs[rt](crops) - ref).max())
        one, many = timings[1][rt], timings[batch][rt]
        rows.append({"network": path.name, "runtime": rt, "batch": batch,
                     "ms_per_crop_batch1": one["median"],
                     "ms_per_crop_batchN": many["median"] / batch,
                     "min_ms_per_crop_batch1": one["min"],
                     "min_ms_per_crop_batchN": many["min"] / batch,
                     "time_vs_ort_batch1": one["ratio"], "time_vs_ort_batchN": many["ratio"],
                     "max_abs_diff_vs_ort": diff})
    return rows


def bench_detector(path: Path, frames: list[np.ndarray], threads: int, rounds: int) -> list[dict]:
    """One row per runtime for the detector file ``path`` (ms per image, batch 1)."""
    det = SSDPersonOnnxDetector(path, threads=threads)
    blobs = [det.input_blob(f) for f in frames]
    outs = ["boxes", "scores"]
    cv_run = opencv_runner(path, outs, threads)
    ov_run = openvino_runner(path, outs, threads)
    runs = {"onnxruntime": lambda f: det.session.run(outs, f), "opencv": cv_run,
            "openvino": ov_run}  # ONNX Runtime first: the ratios are to it
    calls = {k: (lambda r=r: [r({det.input_name: b}) for b in blobs]) for k, r in runs.items()}
    ms = interleaved_ms(calls, max(rounds // 4, 3))
    rows = []
    for rt, run in runs.items():
        diff = max(float(np.abs(a - b).max()) for blob in blobs[:5]
                   for a, b in zip(runs["onnxruntime"]({det.input_name: blob}),
                                   run({det.input_name: blob}), strict=True))
        rows.append({"network": path.name, "runtime": rt,
                     "ms_per_image": ms[rt]["median"] / len(blobs),
                     "min_ms_per_image": ms[rt]["min"] / len(blobs),
                     "time_vs_ort": ms[rt]["ratio"], "max_abs_diff_vs_ort": diff})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--video", type=Path, default=REPO / ".samples" / "vtest.avi")
    ap.add_argument("--frames", type=int, default=20,
                    help="frames for the people-per-frame count, the crops and the detector")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20, help="timed calls per runtime and batch")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_start = os.getloadavg()
    frames = read_frames(args.video, args.frames)
    detector = SSDPersonOnnxDetector(threads=args.threads)
    boxes = [detector.detect(f)[0] for f in frames]
    people = float(np.mean([len(b) for b in boxes]))
    batch = max(int(round(people)), 1)
    log.info("%s: %.2f people per frame over %d frames -> batch %d", args.video.name, people,
             len(frames), batch)
    pose_rows = [r for p in sorted((REPO / "models").glob("*.onnx"))
                 for r in bench_pose(p, frames, boxes, batch, args.threads, args.rounds)]
    det_rows = [r for p in sorted((REPO / "models" / "detectors").glob("*.onnx"))
                for r in bench_detector(p, frames, args.threads, args.rounds)]
    versions = {}
    for pkg in ("onnxruntime", "opencv-python-headless", "openvino"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    results = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"host": socket.gethostname(), "cpus": os.cpu_count(),
                    "cpu": platform.processor() or platform.machine(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "threads": args.threads, "versions": versions,
        "video": args.video.name, "frames": len(frames), "people_per_frame": people,
        "batch": batch, "rounds": args.rounds,
        "notes": "one run; runtimes timed interleaved (median and min of the rounds; "
                 "time_vs_ort: median over rounds of the time over ONNX Runtime's in the same "
                 "round); "
                 "OpenVINO at f32; "
                 "the detector file has a fixed batch of 1 (ms per image = one frame)",
        "pose": pose_rows, "detector": det_rows}
    shown = [{**r, "max_abs_diff_vs_ort": f"{r['max_abs_diff_vs_ort']:.1e}"}
             for r in pose_rows + det_rows]
    print(table(shown[:len(pose_rows)],
                ["network", "runtime", "ms_per_crop_batch1", "ms_per_crop_batchN",
                 "min_ms_per_crop_batch1", "min_ms_per_crop_batchN", "time_vs_ort_batch1",
                 "time_vs_ort_batchN", "max_abs_diff_vs_ort"],
                f"pose network, ms per crop at batch 1 and {batch} ({args.threads} threads; "
                "median and min of the rounds)"))
    print(table(shown[len(pose_rows):],
                ["network", "runtime", "ms_per_image", "min_ms_per_image", "time_vs_ort",
                 "max_abs_diff_vs_ort"],
                f"person detector, ms per image ({args.threads} threads)"))
    out = args.out or (REPO / "benchmarks" / "results" /
                       f"runtimes_{socket.gethostname()}_{dt.datetime.now():%Y%m%d-%H%M}.json")
    atomic_write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
