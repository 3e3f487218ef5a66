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
``evopose_sdk.export`` into ``--cache`` (speed does not depend on the weights). The runs
each in a fresh process (the modes, the references, the whole CLI) are in
``runtime_pipelines.py`` beside this script, the printed tables in ``runtime_report.py``.

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
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from runtime_pipelines import (  # noqa: E402  (the scripts beside this one)
    MODES,
    bench_detectors,
    bench_yolo_pose,
    in_subprocess,
    matmul_gmacs_threads,
    timeit,
)
from runtime_report import issue13_goals, markdown_modes, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_runtime")


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
    text.append("\n## speed and memory goals\n" + json.dumps(goals, indent=1))
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
