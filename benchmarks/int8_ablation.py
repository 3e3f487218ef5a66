#!/usr/bin/env python3
"""What keeps int8 accurate: activation-range rule x quantisation-aware fine-tuning.

For each Keras checkpoint and each ``--calibration`` rule, export ONNX fp32 and TFLite int8
(32 calibration crops from train-split sources, as tools/ship_model.py does), then measure
COCO keypoint AP on the 300 dev_val people with ground-truth boxes and flip test, and the
keypoint parity of int8 against Keras. Prints a table and writes JSON.

    python benchmarks/int8_ablation.py \\
        --checkpoint ptq=runs/evopose2d-s-256/final.keras \\
        --checkpoint qat=runs/evopose2d-s-256-qat/final.keras --data ../shared/data
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from evopose_sdk.training import evaluate_runtime as ev

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("int8_ablation")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, metavar="TAG=PATH.keras",
                    help="a checkpoint to export (repeatable)")
    ap.add_argument("--calibration", nargs="+", default=["minmax", "mse"],
                    choices=["minmax", "mse"])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path,
                    default=REPO / "benchmarks" / "results" / "int8_ablation.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evopose_sdk").setLevel(logging.WARNING)
    checkpoints = {}
    for item in args.checkpoint:
        tag, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            print(f"error: --checkpoint {item!r}: give TAG=PATH.keras of an existing file",
                  file=sys.stderr)
            return 2
        checkpoints[tag] = Path(path)
    if not args.data.is_dir():
        print(f"error: data folder {args.data} not found", file=sys.stderr)
        return 2

    from evopose_sdk.export import export_model

    calib = [args.data / s / "annotations.json" for s in ("litehrnet", "julito", "lsp")]
    gt = ev.load_dev_val(args.data)
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for tag, ckpt in checkpoints.items():
            fp32_ap = None
            for rule in args.calibration:
                out = Path(tmp) / f"{tag}-{rule}"
                formats = "tflite-int8" if fp32_ap is not None else "onnx,tflite-int8"
                res = export_model(ckpt, out, formats=formats, calib_data=calib,
                                   calibration=rule, name=tag, stem=tag)
                if fp32_ap is None:
                    fp32_ap = ev.run_ours(res["onnx"].path, gt, "gt", True, "dark", True)["AP"]
                f = res["tflite-int8"]
                r = ev.run_ours(f.path, gt, "gt", True, "dark", True)
                parity = json.loads(f.parity_path.read_text())["keypoints_px"]
                row = {"checkpoint": tag, "path": str(ckpt), "calibration": rule,
                       "fp32_AP": fp32_ap, "int8_AP": r["AP"], "int8_AP75": r["AP75"],
                       "drop": fp32_ap - r["AP"], "parity_mean_px": parity["mean"],
                       "parity_median_px": parity["median"]}
                log.info("%s", row)
                rows.append(row)
    print(f"{'checkpoint':<12} {'ranges':<7} {'fp32 AP':>8} {'int8 AP':>8} {'drop':>7} "
          f"{'kp mean px':>10} {'median':>7}")
    for r in rows:
        print(f"{r['checkpoint']:<12} {r['calibration']:<7} {r['fp32_AP']:8.3f} "
              f"{r['int8_AP']:8.3f} {r['drop']:7.3f} {r['parity_mean_px']:10.2f} "
              f"{r['parity_median_px']:7.2f}")
    payload = {"created": dt.datetime.now().isoformat(timespec="seconds"),
               "seconds": round(time.perf_counter() - t0, 1), "people": len(gt["annotations"]),
               "boxes": "gt", "flip": True, "decode": "dark",
               "calibration_crops": 32, "parity_crops": 16, "rows": rows}
    from evopose_sdk.atomic import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
