"""Runtime benchmark: pose-network latency, end-to-end video fps, and reference pipelines.

Prints tables and writes JSON to ``benchmarks/results/runtime_<host>_<date>.json``:

1. machine: CPU count and the measured numpy float32 matmul rate (GMAC/s), so the pose
   network's achieved GMAC/s can be read as a fraction of what this machine does;
2. pose network per crop (ms per person): EvoPose2D S and XS, batch 1 / 8, 1 / 2 threads,
   flip test on (2 crops per person) / off, ONNX Runtime vs TFLite fp32 / int8;
3. person detector ms per frame: the original SSD graph in cv2.dnn vs its person-only ONNX;
4. the table of modes (:data:`MODES`: the presets ``default`` (``evopose-infer`` with no
   flags), ``accurate`` and ``fast``, and ``flip every frame`` (the default until
   2026-12-02)): frames/s end to end on ``.samples/vtest.avi``
   (768x576, ~6 pedestrians per frame; decode + detector + pose + tracking + smoothing, each
   mode in a fresh process), ms per stage, the process's peak RSS, and dev_val AP with
   detector boxes (:mod:`evopose_sdk.training.evaluate_runtime`; cached by model/detector
   file hash in ``results/mode_ap_cache.json``, so a new default model is evaluated again);
5. references on the same frames: SSD (cv2.dnn) + MoveNet Thunder (TFLite, one crop per
   person; models built by ``bash ../shared/peers/get_peers.sh`` into /tmp/peers), whose fps
   every mode is divided by (``fps_vs_reference``), and YOLO11n-pose exported to ONNX from
   its yaml (model-only rate, random weights: speed only);
6. memory: ``evopose-infer VIDEO`` with no flags as a whole process at 20 and ``--frames``
   frames (peak RSS), and the size of its model files.

The latency table uses the shipped models when present, else random-weight exports made with
``evopose_sdk.export`` into ``--cache`` (speed does not depend on the weights).

    python benchmarks/bench_runtime.py --frames 150 --skip pose,yolo   # the README's table
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import socket
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


# --------------------------------------------------------------------------- helpers


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


def table(rows: list[dict], cols: list[str], title: str) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    lines = [f"\n## {title}", " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "-|-".join("-" * w for w in widths)]
    lines += [" | ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- models


def pose_models(size: str, cache: Path) -> dict[str, Path]:
    """{"onnx" | "tflite-fp32" | "tflite-int8": path} for EvoPose2D ``size``."""
    from evopose_sdk.registry import available_models

    want = f"evopose2d-{size.lower()}"
    found: dict[str, Path] = {}
    for m in available_models():
        if m.card.name.lower() == want:
            key = "onnx" if m.card.file_format == "onnx" else f"tflite-{m.card.precision}"
            found[key] = m.path
    needed = [f for f in ("onnx", "tflite-fp32", "tflite-int8") if f not in found]
    if needed:
        out = cache / f"evopose2d_{size.lower()}"
        have = {p.name for p in out.glob("*")} if out.is_dir() else set()
        names = {"onnx": f"evopose2d_{size.lower()}.onnx",
                 "tflite-fp32": f"evopose2d_{size.lower()}_fp32.tflite",
                 "tflite-int8": f"evopose2d_{size.lower()}_int8.tflite"}
        missing = [f for f in needed if names[f] not in have]
        if missing:
            import keras

            from evopose_sdk.export import export_model

            keras.utils.set_random_seed(0)
            log.info("exporting random-weight %s (%s) to %s", size, ",".join(missing), out)
            export_model(None, out, formats=",".join(missing), size=size,
                         stem=f"evopose2d_{size.lower()}", name=f"{want}-random",
                         calib_images=REPO / ".samples", n_parity=4, n_calib=16)
        for f in needed:
            found[f] = out / names[f]
    return found


def model_macs(size: str) -> int | None:
    try:
        from evopose_sdk.training.network import build_named, count_macs
    except ImportError:
        return None
    return int(count_macs(build_named(size)))


# --------------------------------------------------------------------------- benches


def bench_pose(sizes: list[str], cache: Path, matmul: dict[int, float], quick: bool) -> list[dict]:
    """``matmul``: {threads: GMAC/s}; a row's matmul_ratio uses the same thread count."""
    from evopose_sdk.backends import make_backend

    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        macs = model_macs(size)
        for fmt, path in pose_models(size, cache).items():
            backend_name = "onnxruntime" if fmt == "onnx" else "tflite"
            for threads in (1, 2):
                be = make_backend(path, backend_name, threads)
                h, w = be.input_hw
                for batch in (1, 8):
                    for flip in (False, True):
                        n = batch * (2 if flip else 1)
                        crops = rng.uniform(0, 255, (n, h, w, 3)).astype(np.float32)
                        t = timeit(lambda c=crops, b=be: b.run(c), min_reps=2 if quick else 3,
                                   min_time=0.5 if quick else 1.5)
                        ms_person = t * 1e3 / batch
                        row = dict(model=size, format=fmt, threads=threads, batch=batch,
                                   flip=flip, ms_per_person=ms_person,
                                   persons_per_s=1e3 / ms_person)
                        if macs:
                            gmacs = macs * (2 if flip else 1) / (ms_person / 1e3) / 1e9
                            row.update(gmac_s=gmacs, matmul_ratio=gmacs / matmul[threads])
                        rows.append(row)
                        log.info("pose %s", row)
                be.close()
    return rows


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


def mode_ap(names: list[str], data: Path, cache_file: Path) -> dict[str, dict]:
    """dev_val AP with detector boxes for each mode's model file and flip setting.

    Cached in ``cache_file`` by the sha256 of the model and detector files, flip and detector
    threshold, so the timed run does not repeat it; a new model file is evaluated again.
    """
    from evopose_sdk import PoseEstimator
    from evopose_sdk.atomic import atomic_write_text
    from evopose_sdk.card import sha256_file
    from evopose_sdk.training.evaluate_runtime import load_dev_val, run_ours

    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    gt = None
    out = {}
    for name in names:
        with PoseEstimator(**MODES[name]["est"]) as est:
            path, flip = est.model_path, est.flip_for("video")  # the table's modes are video
            det = getattr(est.detector, "path", None)
            thr = getattr(est.detector, "score_threshold", None)
        key = "|".join([sha256_file(path)[:16], f"flip={flip}",
                        sha256_file(det)[:16] if det else "no-file", f"thr={thr}"])
        if key not in cache:
            if gt is None:
                gt = load_dev_val(data)
            log.info("dev_val AP of %s (flip=%s) with detector boxes", path.name, flip)
            row = run_ours(path, gt, "detector", flip, "dark", quiet=True)
            cache[key] = {k: row[k] for k in ("file", "flip", "AP", "AP50", "AP75", "AR")}
            atomic_write_text(cache_file, json.dumps(cache, indent=2))
        out[name] = cache[key]
    return out


def markdown_modes(results: dict) -> str:
    """The README's table of modes from a run's JSON (``end_to_end`` rows)."""
    lines = ["| mode (`evopose-infer` flags) | model file | flip | detect every | dev_val AP, "
             "detector boxes | fps | x reference | ms/frame: decode / detect / crops / pose / "
             "decode+NMS / track+smooth | peak RSS MiB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in results.get("end_to_end", []):
        if "fps" not in r:
            continue
        ms = " / ".join(f"{r[k]:.1f}" if k in r else "-" for k in (
            "decode_ms", "detect_ms", "preprocess_ms", "pose_ms", "postprocess_ms"))
        ms += f" / {r['track_ms'] + r.get('smooth_ms', 0.0):.1f}" if "track_ms" in r else " / -"
        name = f"**{r['mode']}** (`{r['cli'].replace('evopose-infer VIDEO', '').strip() or 'no flags'}`)" \
            if "mode" in r else r["pipeline"]
        ap = f"{r['AP_detector_boxes']:.3f}" if "AP_detector_boxes" in r else "-"
        lines.append(f"| {name} | {r.get('file', r.get('model', ''))} | "
                     f"{'on' if r.get('flip') else 'off'} | {r.get('detect_every', 1)} | {ap} | "
                     f"{r['fps']:.1f} | {r.get('fps_vs_reference', 1.0):.2f} | {ms} | "
                     f"{r.get('peak_rss_mib', 0.0):.0f} |")
    return "\n".join(lines)


def issue13_goals(results: dict) -> dict:
    """The issue-13 targets read off this run's rows (None where a section was skipped)."""
    rows = {r.get("mode") or r.get("pipeline"): r for r in results.get("end_to_end", [])}
    ref = rows.get("SSD + MoveNet Thunder (reference)")
    out: dict = {}
    if "default" in rows and ref:
        d = rows["default"]
        out["default_fps_vs_reference"] = d["fps"] / ref["fps"]
        out["default_ap_detector_boxes"] = d.get("AP_detector_boxes")
        out["default_ok"] = out["default_fps_vs_reference"] >= 1.0
    if "fast" in rows:
        f = rows["fast"]
        out.update(fast_fps=f["fps"], fast_ap_detector_boxes=f.get("AP_detector_boxes"),
                   fast_ok=f["fps"] >= 40.0)
    mem = results.get("cli_memory")
    if mem and ref:
        files_mib = sum(results.get("cli_model_files", {}).values()) / 2**20
        peak = max(m["peak_rss_mib"] for m in mem)
        out.update(cli_peak_rss_mib=peak, reference_peak_rss_mib=ref["peak_rss_mib"],
                   model_files_mib=files_mib,
                   memory_limit_mib=ref["peak_rss_mib"] + files_mib,
                   memory_ok=peak <= ref["peak_rss_mib"] + files_mib,
                   cli_peak_growth_mib=mem[-1]["peak_rss_mib"] - mem[0]["peak_rss_mib"])
    return out


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


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--frames", type=int, default=100, help="frames per end-to-end config")
    p.add_argument("--sizes", default="S,XS", help="EvoPose2D sizes for the latency table")
    p.add_argument("--video", type=Path, default=REPO / ".samples" / "vtest.avi")
    p.add_argument("--peers", type=Path, default=Path(os.environ.get("PEERS_DIR", "/tmp/peers")))
    p.add_argument("--cache", type=Path, default=Path("/tmp/evopose_bench_cache"),
                   help="folder for exported random-weight models")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--skip", default="",
                   help="comma list of sections to skip: pose,detectors,e2e,ap,peers,yolo,memory")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"end-to-end modes to run (default: all of {', '.join(MODES)})")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="shared data folder, for the dev_val AP of each mode")
    p.add_argument("--ap-cache", type=Path,
                   default=REPO / "benchmarks" / "results" / "mode_ap_cache.json",
                   help="dev_val AP per model file + flip (reused while the files are unchanged)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for name in ("evopose_sdk", "absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    skip = set(filter(None, args.skip.split(",")))
    sizes = [s.strip().upper() for s in args.sizes.split(",") if s.strip()]

    machine = dict(host=socket.gethostname(), python=platform.python_version(),
                   cpus=os.cpu_count(), processor=platform.processor() or platform.machine(),
                   numpy=np.__version__, opencv=cv2.__version__)
    from importlib import metadata

    for dist in ("onnxruntime", "ai-edge-litert"):  # the runtimes the rows depend on
        try:
            machine[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    matmul = {t: matmul_gmacs_threads(t) for t in (1, 2)}
    machine["matmul_gmac_s"] = {f"{t}_thread": v for t, v in matmul.items()}
    log.info("machine %s", machine)
    results: dict = dict(date=dt.datetime.now().isoformat(timespec="seconds"), machine=machine,
                         command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
    text = [f"machine: {machine['cpus']} CPUs, numpy float32 1024^3 matmul {matmul[1]:.1f} "
            f"GMAC/s (1 thread), {matmul[2]:.1f} GMAC/s (2 threads); matmul_ratio = pose "
            "network GMAC/s / matmul GMAC/s at the same thread count"]

    if "pose" not in skip:
        macs = {s: model_macs(s) for s in sizes}
        results["model_macs"] = macs
        rows = bench_pose(sizes, args.cache, matmul, args.quick)
        results["pose_latency"] = rows
        text.append(f"MACs per crop: { {k: f'{v / 1e9:.3f} G' for k, v in macs.items() if v} }")
        text.append(table(rows, ["model", "format", "threads", "batch", "flip", "ms_per_person",
                                 "persons_per_s", "gmac_s", "matmul_ratio"],
                          "pose network latency per person (flip = 2 crops per person)"))
    e2e: list[dict] = []
    if not args.video.is_file():
        log.warning("%s missing: run python tools/fetch_samples.py", args.video)
        skip |= {"e2e", "peers", "memory", "detectors"}
    if "detectors" not in skip:
        rows = bench_detectors(args.video, args.frames)
        results["detectors"] = rows
        text.append(table(rows, ["detector", "ms_per_frame", "boxes_per_frame"],
                          f"person detector on {args.video.name} frames (ms per frame)"))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "e2e" not in skip and "ap" not in skip:
        aps = mode_ap(modes, args.data, args.ap_cache)
        results["mode_ap"] = aps
    if "e2e" not in skip:
        # each mode (and the reference) in a fresh process: its own peak memory, no warm
        # caches from the one before
        for name in modes:
            row = in_subprocess("run_mode", name, args.video, args.frames)
            if "e2e" not in skip and "ap" not in skip:
                row.update({f"{k}_detector_boxes": v for k, v in aps[name].items()
                            if k in ("AP", "AP50", "AP75", "AR")})
            e2e.append(row)
            log.info("e2e %s", row)
    if "peers" not in skip:
        row = in_subprocess("bench_ssd_thunder", args.video, args.frames, args.peers)
        if row:
            e2e.append(row)
            ref_fps = row["fps"]
            for r in e2e:
                r["fps_vs_reference"] = r["fps"] / ref_fps
    if "yolo" not in skip:
        row = bench_yolo_pose(args.video, args.cache, args.quick)
        e2e.append(row)
    if e2e:
        results["end_to_end"] = e2e
        text.append(table(e2e, ["mode", "pipeline", "file", "flip", "detect_every", "frames",
                                "people_per_frame", "fps", "fps_vs_reference",
                                "AP_detector_boxes", "decode_ms", "detect_ms", "preprocess_ms",
                                "pose_ms", "postprocess_ms", "track_ms", "smooth_ms",
                                "peak_rss_mib", "note"],
                          f"end to end on {args.video.name} (frames/s, ms per frame; decode "
                          "and detect overlap pose in the pipelined modes)"))
    if "memory" not in skip:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            mem = [in_subprocess("cli_peak_rss", args.video, n, tmp)
                   for n in sorted({20, args.frames})]
        results["cli_memory"] = mem
        from evopose_sdk import PoseEstimator

        with PoseEstimator() as est:
            files = [est.model_path] + ([est.detector.path] if hasattr(est.detector, "path")
                                        else [])
        results["cli_model_files"] = {f.name: f.stat().st_size for f in files}
        text.append(table(mem, ["frames", "rc", "wall_s", "peak_rss_mib"],
                          "evopose-infer VIDEO (no flags) as a whole process: peak RSS by "
                          f"video length; model files {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB"))
    results["goals"] = goals = issue13_goals(results)
    text.append("\n## issue 13 goals\n" + json.dumps(goals, indent=1))
    if e2e:
        text.append("\n## modes, as in the README\n" + markdown_modes(results))
    report = "\n".join(text)
    print(report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M")
    out = args.out_dir / f"runtime_{machine['host']}_{stamp}.json"
    from evopose_sdk.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
