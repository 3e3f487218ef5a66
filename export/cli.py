"""``evopose-export``: checkpoint -> ONNX / TFLite files with cards and parity reports.

    evopose-export run/evopose2d_s.keras --out models/ --calib-data data/coco128/annotations.json
    evopose-export --size S --formats onnx --out models/          # random weights
    evopose-export yolo --model yolo11n.yaml --imgsz 640 --out models/yolo11n.onnx

Exit codes (:mod:`evopose_sdk.cli_shell`): 0 ok, 1 error (one line), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options, run_main, setup_logging
from evopose_sdk.export.formats import FORMAT_GROUPS, FORMATS
from evopose_sdk.export.options import CALIBRATIONS

PROG = "evopose-export"

FORMAT_HELP = (f"{', '.join(FORMATS)}, "
               f"{', '.join(f'{g} (all {g}-*)' for g in FORMAT_GROUPS)} or all")


def _model_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG,
        description="Export an EvoPose2D pose network to ONNX and TFLite (fp32/fp16/int8). "
                    "Each file gets a card (<file>.json; also embedded in ONNX metadata) and a "
                    "parity report (<file>.parity.json) against the Keras model on real person "
                    "crops. For the YOLO person detector see `evopose-export yolo --help`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", nargs="?", default=None,
                   help=".keras checkpoint or the authors' legacy evopose2d_{XS,S,M,L}_f32.h5; "
                        "omit it and give --size/--genotype for random weights")
    p.add_argument("--out", default="exported", help="output folder")
    p.add_argument("--formats", default="all", help=FORMAT_HELP + " (comma-separated)")
    p.add_argument("--size", choices=["XS", "S", "M", "L", "xs", "s", "m", "l"],
                   help="named model size (for .h5 inferred from the file name)")
    p.add_argument("--genotype", help="genotype k3r1f2s1_... or a JSON list of 7 [k, r, f/8, s]")
    p.add_argument("--input-size", help="input HxW for --genotype/--size builds, e.g. 256x192")
    p.add_argument("--name", help="model name in the card (default from size/checkpoint)")
    p.add_argument("--stem", help="file name stem (default from the name, e.g. evopose2d_s)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 13..18")
    p.add_argument("--calib-data", action="append", default=[], metavar="ANNOTATIONS.json",
                   help="COCO keypoint JSON whose person boxes give the int8 calibration and "
                        "parity crops (repeatable); images in --calib-image-dir or "
                        "<json dir>/images")
    p.add_argument("--calib-image-dir", action="append", default=[], metavar="DIR",
                   help="image folder for the matching --calib-data file")
    p.add_argument("--calib-images", metavar="DIR",
                   help="folder of person photos used whole / centre-cropped (no boxes)")
    p.add_argument("--n-parity", type=int, default=16, help="crops for the parity check")
    p.add_argument("--n-calib", type=int, default=32, help="crops for int8 calibration")
    p.add_argument("--calibration", default=CALIBRATIONS[0], choices=CALIBRATIONS,
                   help="int8 activation ranges: least round-trip error per tensor, or the "
                        "converter's calibration min/max")
    p.add_argument("--decode", default="dark", choices=["argmax", "quarter", "dark"],
                   help="decoder for the keypoint parity figures")
    p.add_argument("--untrained", action="store_true",
                   help="mark a checkpoint's card trained=false")
    p.add_argument("--training-data", help="training data description for the card")
    p.add_argument("--metrics", help="JSON object of measured metrics (e.g. AP) for the card")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_verbosity_options(p)
    return p


def _yolo_parser() -> ArgumentParser:
    p = ArgumentParser(prog=f"{PROG} yolo",
                description="Export ultralytics YOLO weights (.pt) or an architecture (.yaml, "
                            "random weights) to an ONNX person detector, output (1, 84, N) "
                            "without NMS. Needs torch and ultralytics (extra [yolo-export]).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="yolo11n.yaml", help="yolo11n.yaml or PATH.pt")
    p.add_argument("--imgsz", type=int, default=640, help="square input size (multiple of 32)")
    p.add_argument("--out", help="output .onnx path (default <model stem>.onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default ultralytics')")
    add_verbosity_options(p)
    return p


def _print_table(rows: list[dict]) -> None:
    print(f"{'format':<12} {'MB':>6} {'s':>6} {'hm max|d|':>10} {'rel range':>10} "
          f"{'kp mean px':>10} {'kp max px':>10}  file")
    for r in rows:
        print(f"{r['format']:<12} {r['size_mb']:6.2f} {r['export_s']:6.1f} {r['hm_max_abs']:10.3g} "
              f"{r['hm_max_rel']:10.3g} {r['kp_mean_px']:10.3g} {r['kp_max_px']:10.3g}  "
              f"{r['path']}")


def _run_yolo(argv: Sequence[str]) -> int:
    args = _yolo_parser().parse_args(argv)
    setup_logging(f"{PROG} yolo", args.quiet, args.verbose)
    from evopose_sdk.export.yolo import export_yolo

    path = export_yolo(args.model, args.out, imgsz=args.imgsz, opset=args.opset)
    print(path)
    return 0


def _run_model(argv: Sequence[str]) -> int:
    parser = _model_parser()
    args = parser.parse_args(argv)
    setup_logging(PROG, args.quiet, args.verbose)
    metrics = None
    if args.metrics:
        try:
            metrics = json.loads(args.metrics)
        except json.JSONDecodeError as exc:
            parser.error(f"--metrics must be a JSON object: {exc}")
        if not isinstance(metrics, dict):
            parser.error("--metrics must be a JSON object")
    if args.checkpoint is None and args.size is None and args.genotype is None:
        parser.error("nothing to export: give a checkpoint, or --size / --genotype for a "
                     "random-weight model")
    from evopose_sdk.export.api import export_model

    result = export_model(
        args.checkpoint, args.out, formats=args.formats, size=args.size, genotype=args.genotype,
        input_size=args.input_size, name=args.name, stem=args.stem,
        trained=False if args.untrained else None, training_data=args.training_data,
        metrics=metrics, opset=args.opset, calib_data=args.calib_data,
        calib_image_dirs=args.calib_image_dir, calib_images=args.calib_images,
        n_parity=args.n_parity, n_calib=args.n_calib, decode=args.decode,
        calibration=args.calibration)
    rows = result.summary()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return 0


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "yolo":
        return _run_yolo(argv[1:])
    return _run_model(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evopose-export``; returns the exit code (0 ok, 1 error, 2 usage,
    130 interrupted)."""
    return run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
