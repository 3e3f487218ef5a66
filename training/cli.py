"""``evopose-train``: train / resume an EvoPose2D model from a config file.

Examples::

    evopose-train --config s --data /path/to/data --out runs/s
    evopose-train --config s --data data --out runs/s --set train.epochs=3 --set train.batch_size=16
    evopose-train --config s --out runs/s --resume must          # continue a killed run
    nohup evopose-train --config s --data data --out runs/s --init imagenet-lite0 \\
        --log-file runs/s/train.log > /dev/null 2>&1 &
    evopose-train --print-config --config xs --set train.epochs=3  # show the resolved config
    evopose-train eval runs/s/final.keras --data data              # COCO AP on dev_val
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("evopose_sdk.training")


def _env_defaults() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN kernels: 36 vs 27 img/s for S at 128x96 on 2 cores (results differ from the
    # plain kernels only by float round-off); the tests pin TF_ENABLE_ONEDNN_OPTS=0
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _setup_logging(log_file: str | None, verbose: bool, logger: str = "evopose_sdk") -> None:
    """Log ``logger`` at INFO (DEBUG if verbose), the rest of evopose_sdk and other libraries
    at WARNING, to stderr and optionally to ``log_file``."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    logging.getLogger("evopose_sdk").setLevel(logging.WARNING)
    logging.getLogger(logger).setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evopose-train", description="Train or resume an EvoPose2D model.",
        epilog="Any config field: --set section.key=value (e.g. train.epochs=3, "
               "data.workers=4, model.input_hw=[128,96]). 'evopose-train eval -h' evaluates.")
    p.add_argument("--config", "-c", default="s",
                   help="bundled config xs|s|m|l or a JSON file (default: s)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable)")
    p.add_argument("--data", help="data root with <source>/annotations.json (data.root)")
    p.add_argument("--out", help="run folder (output.dir)")
    p.add_argument("--init", help="weights to start from: imagenet-lite0, a .keras or a .pth")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="train.lr (at train.lr_reference_batch)")
    p.add_argument("--max-steps", type=int, help="stop (with a checkpoint) at this step")
    p.add_argument("--workers", type=int, help="data.workers")
    p.add_argument("--devices", help="train.devices: 1, N or all")
    p.add_argument("--threads", type=int, help="train.threads: CPU threads per op")
    p.add_argument("--precision", help="auto|float32|mixed_bfloat16|mixed_float16")
    p.add_argument("--resume", choices=("auto", "never", "must"), default="auto",
                   help="auto: continue a run found in --out (default)")
    p.add_argument("--log-file", help="also log to this file (for background runs)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    p.add_argument("--verbose", "-v", action="store_true")
    return p


def _overrides(args) -> list[str]:
    sets = []
    flag_map = {"data": "data.root", "out": "output.dir", "init": "init.from",
                "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
                "max_steps": "train.max_steps", "workers": "data.workers",
                "devices": "train.devices", "precision": "train.precision",
                "threads": "train.threads"}
    for attr, key in flag_map.items():
        v = getattr(args, attr)
        if v is not None:
            sets.append(f"{key}={json.dumps(v) if not isinstance(v, str) else v}")
    if args.no_progress:
        sets.append("train.progress=false")
    return sets + list(args.set)


def _eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="evopose-train eval",
                                description="COCO keypoint AP of a .keras model.")
    p.add_argument("model", help=".keras checkpoint")
    p.add_argument("--data", required=True, help="data root (sources with images of --split)")
    p.add_argument("--split", default="dev_val")
    p.add_argument("--detections", help="COCO detection results JSON (default: GT boxes)")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--results", help="write COCO keypoint results JSON here")
    p.add_argument("--max-images", type=int)
    p.add_argument("--log-file")
    args = p.parse_args(argv)
    _setup_logging(args.log_file, False)
    from evopose_sdk.training import evaluate  # noqa: PLC0415
    from evopose_sdk.training import sources as srcmod  # noqa: PLC0415

    srcs = [s for s in srcmod.sources_in_root(args.data, args.split)
            if srcmod.filter_coco_split(srcmod.read_coco_json(s.annotations),
                                         args.split)["annotations"]]
    res = evaluate.evaluate_model(args.model, srcs, detections=args.detections,
                                  flip=not args.no_flip, results_path=args.results,
                                  max_images=args.max_images)
    print(json.dumps({"images": res.num_images, "people": res.num_people, **res.stats}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``evopose-train``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _env_defaults()
    if argv and argv[0] == "eval":
        return _eval_main(argv[1:])
    args = _train_parser().parse_args(argv)
    from evopose_sdk.training import config as cfgmod  # noqa: PLC0415

    try:
        cfg = cfgmod.load_config(args.config, _overrides(args))
    except cfgmod.ConfigError as exc:
        print(f"evopose-train: error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    _setup_logging(args.log_file, args.verbose)
    from evopose_sdk.training import sources as srcmod  # noqa: PLC0415
    from evopose_sdk.training.train import train  # noqa: PLC0415

    try:
        path = train(cfg, resume=args.resume)
    except (cfgmod.ConfigError, srcmod.DataError, FileExistsError, FileNotFoundError) as exc:
        log.error("%s", exc)
        print(f"evopose-train: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
