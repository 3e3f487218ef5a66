"""The timed runs of ``bench_runtime.py``, each of which it may start in a fresh Python
process (:func:`in_subprocess` runs this file with :func:`runpy.run_path`, so it imports only
the package): the machine's matmul rate, every mode of :data:`MODES` end to end,
``evopose-infer`` as a whole process, the person detectors and the reference pipelines (SSD +
MoveNet Thunder, YOLO11n-pose).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from evopose_sdk.presets import PRESETS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_runtime")


# --------------------------------------------------------------------------- machine


def timeit(fn, min_reps: int = 3, min_time: float = 1.0, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` over at least ``min_reps`` calls / ``min_time`` s."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    return float(np.median(times))


def matmul_gmacs_threads(threads: int, n: int = 1024) -> float:
    """numpy float32 matmul GMAC/s with BLAS limited to ``threads`` (in a fresh process,
    since BLAS thread counts are fixed at import)."""
    import subprocess

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    code = (f"import runpy; b = runpy.run_path({__file__!r}); "
            f"print(b['matmul_gmacs']({n}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def matmul_gmacs(n: int = 1024) -> float:
    """numpy float32 (n x n) @ (n x n) rate in GMAC/s (all threads numpy's BLAS uses)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = timeit(lambda: a @ b, min_reps=5, min_time=2.0)
    return n ** 3 / t / 1e9


# --------------------------------------------------------------------------- modes


#: The modes of the speed / accuracy table: PoseEstimator keyword arguments ("est") and the
#: ``evopose-infer`` flags that ask for the same ("cli"). Each preset of
#: :data:`evopose_sdk.presets.PRESETS` is a mode through the estimator's own ``preset=``, as
#: ``evopose-infer --NAME`` passes it ("default": no flags), so the table, the estimator and
#: the CLI read the same values; ``stream()`` takes ``detect_every`` from the estimator.
MODES: dict[str, dict] = {
    **{name: dict(est=dict(preset=name), cli="" if name == "default" else f"--{name}")
       for name in PRESETS},
    # the default until 2026-12-02: the flip test and the detector on every frame
    "flip every frame": dict(est=dict(flip_test=True, detect_every=1),
                             cli="--flip --detect-every 1"),
    # the fast preset's other settings, one at a time, on the same front (no commas in
    # names: --modes is a comma-separated list)
    "fast + flip test": dict(est=dict(preset="fast", flip_test=True), cli="--fast --flip"),
    "fast + detector every 3rd": dict(est=dict(preset="fast", detect_every=3),
                                     cli="--fast --detect-every 3"),
    "fast + 1 thread": dict(est=dict(preset="fast", threads=1), cli="--fast --threads 1"),
}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB): Linux ``VmHWM``. (``ru_maxrss``
    would not do: a child started by fork + exec inherits its parent's high-water mark.)"""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024.0


def run_mode(name: str, video: str | Path, frames: int) -> dict:
    """One mode end to end on ``video`` in this process: fps, ms per stage, peak RSS.

    fps = frames / wall time of the stream (decode + detect + pose + track + smooth, with
    the pipeline's overlap); stage ms are per-frame means of ``PoseResult.speed_ms``.
    """
    from evopose_sdk import PoseEstimator

    mode = MODES[name]
    with PoseEstimator(**mode["est"]) as est:
        stages: dict[str, float] = {}
        people = n = 0
        t0 = time.perf_counter()
        for _, r in est.stream(video, max_frames=frames):
            n += 1
            people += len(r)
            for k, v in r.speed_ms.items():
                stages[k] = stages.get(k, 0.0) + v
        elapsed = time.perf_counter() - t0
        desc = dict(model=est.card.name, file=est.model_path.name, precision=est.card.precision,
                    flip=est.flip_for("video"), detect_every=est.detect_every_for("video"),
                    detector=type(est.detector).__name__)
    return dict(mode=name, cli=f"evopose-infer VIDEO {mode['cli']}".strip(), **desc,
                frames=n,
                people_per_frame=people / max(n, 1), fps=n / elapsed,
                peak_rss_mib=peak_rss_mib(),
                **{f"{k}_ms": v / max(n, 1) for k, v in stages.items()})


def in_subprocess(fn: str, *args: object) -> dict:
    """``fn(*args)`` of this module in a fresh Python process (own peak memory); its dict."""
    import subprocess

    text_args = json.dumps([str(a) if isinstance(a, Path) else a for a in args])
    code = (f"import json, runpy; b = runpy.run_path({__file__!r}); "
            f"print('@@' + json.dumps(b[{fn!r}](*json.loads({text_args!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO)
    lines = [x for x in out.stdout.splitlines() if x.startswith("@@")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{fn}{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][2:])


def cli_peak_rss(video: str | Path, frames: int, out_dir: str | Path, flags: str = "") -> dict:
    """``evopose-infer VIDEO --max-frames N -q -o out_dir [flags]`` in this process: wall time
    and peak RSS (MiB). Writes the annotated video and JSON lines, as a user gets."""
    from evopose_sdk.cli import main as cli_main

    t0 = time.perf_counter()
    rc = cli_main([str(video), "--max-frames", str(frames), "-q", "-o", str(out_dir),
                   *flags.split()])
    return dict(frames=frames, flags=flags, rc=rc, wall_s=time.perf_counter() - t0,
                peak_rss_mib=peak_rss_mib())


# --------------------------------------------------------------- detectors and references


def bench_detectors(video: Path, frames: int) -> list[dict]:
    """ms per frame of the person detectors on the same ``video`` frames: the original SSD
    graph in cv2.dnn (91 classes) and its person-only ONNX conversion at 1 and 2 threads."""
    from evopose_sdk.detectors import SSDMobileNetDetector, SSDPersonOnnxDetector

    cap = cv2.VideoCapture(str(video))
    clip = [f for ok, f in (cap.read() for _ in range(min(frames, 30))) if ok]
    cap.release()
    dets = {"SSD-MobileNetV2 cv2.dnn (original graph)": lambda: SSDMobileNetDetector(),
            "SSD-MobileNetV2 person ONNX, 1 thread": lambda: SSDPersonOnnxDetector(threads=1),
            "SSD-MobileNetV2 person ONNX, 2 threads": lambda: SSDPersonOnnxDetector(threads=2)}
    rows = []
    for name, make in dets.items():
        det = make()
        t = timeit(lambda d=det: [d.detect(f) for f in clip], min_reps=2, min_time=1.0)
        rows.append(dict(detector=name, ms_per_frame=t * 1e3 / len(clip),
                         boxes_per_frame=float(np.mean([len(det.detect(f)[0]) for f in clip]))))
        log.info("detector %s", rows[-1])
    return rows


def bench_ssd_thunder(video: str | Path, frames: int, peers: str | Path) -> dict | None:
    """SSD-MobileNetV2 (cv2.dnn) + MoveNet Thunder TFLite on each person box."""
    thunder = Path(peers) / "models" / "movenet_thunder.tflite"
    if not thunder.is_file():
        log.warning("MoveNet Thunder not found in %s: run bash ../shared/peers/get_peers.sh", peers)
        return None
    from ai_edge_litert.interpreter import Interpreter

    from evopose_sdk.detectors import SSDMobileNetDetector, ssd_model_files

    det = SSDMobileNetDetector()
    it = Interpreter(model_path=str(thunder), num_threads=2)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    side = int(inp["shape"][1])
    cap = cv2.VideoCapture(str(video))
    n = people = 0
    t_det = t_pose = 0.0
    t0 = time.perf_counter()
    while n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        a = time.perf_counter()
        boxes, _ = det.detect(frame)
        b = time.perf_counter()
        for x1, y1, x2, y2 in boxes:
            cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, 1.25 * max(x2 - x1, y2 - y1)
            m = np.array([[side / s, 0, side / 2 - cx * side / s],
                          [0, side / s, side / 2 - cy * side / s]], np.float32)
            crop = cv2.warpAffine(frame, m, (side, side))[:, :, ::-1]
            it.set_tensor(inp["index"], crop[None].astype(inp["dtype"]))
            it.invoke()
            it.get_tensor(out["index"])
        c = time.perf_counter()
        t_det += b - a
        t_pose += c - b
        people += len(boxes)
        n += 1
    elapsed = time.perf_counter() - t0
    cap.release()
    return dict(pipeline="SSD + MoveNet Thunder (reference)", model="movenet-thunder",
                format="tflite-fp32", flip=False, detect_every=1, frames=n,
                people_per_frame=people / max(n, 1), fps=n / elapsed,
                detect_ms=t_det * 1e3 / max(n, 1), pose_ms=t_pose * 1e3 / max(n, 1),
                peak_rss_mib=peak_rss_mib(),
                model_bytes=(thunder.stat().st_size
                             + sum(f.stat().st_size for f in ssd_model_files())))


def bench_yolo_pose(video: Path, cache: Path, quick: bool) -> dict:
    """YOLO11n-pose (random weights from its yaml) exported to ONNX; model-only rate."""
    onnx_path = cache / "yolo11n-pose.onnx"
    if not onnx_path.is_file():
        try:
            from evopose_sdk.export.yolo import export_yolo
        except ImportError as exc:
            return dict(pipeline="YOLO11n-pose (reference)", note=f"skipped: {exc}")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            export_yolo("yolo11n-pose.yaml", onnx_path, imgsz=640)
        except Exception as exc:  # noqa: BLE001 - a reference row, not the product
            return dict(pipeline="YOLO11n-pose (reference)", note=f"skipped: {exc}")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    scale = 640 / max(frame.shape[:2])
    small = cv2.resize(frame, None, fx=scale, fy=scale)
    canvas = np.full((640, 640, 3), 114, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    x = np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
    t = timeit(lambda: sess.run(None, {name: x}), min_reps=5, min_time=1.0 if quick else 3.0)
    return dict(pipeline="YOLO11n-pose ONNX 640x640 (reference, model only)",
                model="yolo11n-pose", format="onnx", frames=1, fps=1.0 / t, pose_ms=t * 1e3)
