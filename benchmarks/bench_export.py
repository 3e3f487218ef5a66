"""Export benchmark: size, export time and parity per format (ONNX, TFLite fp32/fp16/int8).

    python benchmarks/bench_export.py --size S \
        --calib-data ../shared/data/coco128/annotations.json \
        --calib-data ../shared/data/tinycoco/annotations.json --json bench_export.json

Without a checkpoint the network has random weights (near-flat heatmaps): judge parity by the
heatmap difference relative to the heatmap range; keypoint figures become meaningful with
trained weights. Also times one forward pass per file (batch 1, median of --repeats).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", help=".keras / .h5 (default: random weights)")
    ap.add_argument("--size", default="S")
    ap.add_argument("--genotype")
    ap.add_argument("--input-size")
    ap.add_argument("--formats", default="all")
    ap.add_argument("--calib-data", action="append", default=[])
    ap.add_argument("--calib-images")
    ap.add_argument("--n-parity", type=int, default=32)
    ap.add_argument("--n-calib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="keep the files here (default: a temp dir)")
    ap.add_argument("--json", default="bench_export.json", help="JSON output path")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from evopose_sdk.backends import make_backend
    from evopose_sdk.export import export_model

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t0 = time.perf_counter()
        res = export_model(args.checkpoint, out, formats=args.formats,
                           size=None if args.checkpoint or args.genotype else args.size,
                           genotype=args.genotype, input_size=args.input_size,
                           calib_data=args.calib_data, calib_images=args.calib_images,
                           n_parity=args.n_parity, n_calib=args.n_calib)
        total = time.perf_counter() - t0
        rows = res.summary()
        for row in rows:
            f = res[row["format"]]
            h, w = f.card.input_size
            backend = make_backend(f.path, threads=args.threads)
            x = np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)).astype(np.float32)
            backend.run(x)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                backend.run(x)
                times.append(time.perf_counter() - t)
            backend.close()
            row["infer_ms_b1"] = 1000 * float(np.median(times))
            row["kp_within_1px"] = f.parity["keypoints_px"]["within_1px"]
            row["hm_mean_rel"] = f.parity["heatmap"]["mean_abs_diff_rel_range"]
            row["crops"] = f.parity["crops"]["description"]
            row["trained"] = f.card.trained
            row["path"] = Path(row["path"]).name

    print(f"{'format':<12} {'MB':>6} {'export s':>8} {'ms/b1':>7} {'hm max|d|':>10} "
          f"{'max/range':>10} {'mean/range':>10} {'kp mean px':>10} {'kp max px':>9} {'<=1px':>6}")
    for r in rows:
        print(f"{r['format']:<12} {r['size_mb']:6.2f} {r['export_s']:8.1f} {r['infer_ms_b1']:7.1f} "
              f"{r['hm_max_abs']:10.3g} {r['hm_max_rel']:10.3g} {r['hm_mean_rel']:10.3g} "
              f"{r['kp_mean_px']:10.3g} {r['kp_max_px']:9.3g} {r['kp_within_1px']:6.2f}")
    print(f"total export time {total:.1f} s (includes model load/build and reference heatmaps)")
    report = {"rows": rows, "total_s": total, "args": vars(args),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}}
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
