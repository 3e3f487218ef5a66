"""``evopose-train``: train / resume an EvoPose2D model from a config file.

Examples::

    evopose-train --config s --data /path/to/data --out runs/s
    evopose-train --config s --data data --out runs/s --set train.epochs=3 --set train.batch_size=16
    evopose-train --config s --out runs/s --resume must          # continue a killed run
    nohup evopose-train --config s --data data --out runs/s --init imagenet-lite0 \\
        --log-file runs/s/train.log > /dev/null 2>&1 &
    evopose-train --print-config --config xs --set train.epochs=3  # show the resolved config
    evopose-train eval runs/s/final.keras --data data              # COCO AP on dev_val

SIGINT or SIGTERM finishes the step in hand, writes a checkpoint and exits 130; running the
same command again resumes. Exit codes (:mod:`evopose_sdk.cli_shell`): 0 ok, 1 error (one
line), 2 usage or a bad config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options, run_main, setup_logging
from evopose_sdk.errors import RunInterrupted

PROG = "evopose-train"


def _train_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog=PROG, description="Train or resume an EvoPose2D model.",
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
    add_verbosity_options(p)
    return p


def _overrides(args: argparse.Namespace) -> list[str]:
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
    if args.no_progress or args.quiet:
        sets.append("train.progress=false")
    return sets + list(args.set)


def _eval_main(argv: list[str]) -> int:
    p = ArgumentParser(prog=f"{PROG} eval", description="COCO keypoint AP of a .keras model.")
    p.add_argument("model", help=".keras checkpoint")
    p.add_argument("--data", required=True, help="data root (sources with images of --split)")
    p.add_argument("--split", default="dev_val")
    p.add_argument("--detections", help="COCO detection results JSON (default: GT boxes)")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--results", help="write COCO keypoint results JSON here")
    p.add_argument("--max-images", type=int)
    p.add_argument("--log-file", help="also log to this file")
    add_verbosity_options(p)
    args = p.parse_args(argv)
    setup_logging(f"{PROG} eval", args.quiet, args.verbose, log_file=args.log_file,
                  timestamps=True)
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


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "eval":
        return _eval_main(argv[1:])
    parser = _train_parser()
    args = parser.parse_args(argv)
    from evopose_sdk.training import config as cfgmod  # noqa: PLC0415

    try:
        cfg = cfgmod.load_config(args.config, _overrides(args))
    except cfgmod.ConfigError as exc:
        parser.error(str(exc))
    if args.print_config:
        print(json.dumps(cfg, indent=2))
        return 0
    setup_logging(PROG, args.quiet, args.verbose, log_file=args.log_file, timestamps=True)
    from evopose_sdk.training.rundir import RunDir  # noqa: PLC0415
    from evopose_sdk.training.train import train  # noqa: PLC0415

    path = train(cfg, resume=args.resume)
    print(path)
    state = RunDir(cfg["output"]["dir"]).read_state() or {}
    max_steps = cfg["train"]["max_steps"]
    if not state.get("finished") and not (max_steps and state.get("step", 0) >= max_steps):
        raise RunInterrupted(f"stopped by a signal at step {state.get('step')} of "
                             f"{state.get('total_steps')} with checkpoint {path}; run the same "
                             "command again to resume")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``evopose-train``; returns the exit code."""
    return run_main(PROG, _main, argv, failures=(FloatingPointError,))


if __name__ == "__main__":
    raise SystemExit(main())
