"""Ablation rows at equal CPU: dev_val AP of training runs' checkpoints at the same step.

    python benchmarks/ablation_table.py --step 50 \
        --arm control=runs/ablations/s256-control --arm occlusion=runs/ablations/s256-occlusion

Every arm of an ablation starts from the same weights with the same schedule and batch, and
a step costs the same CPU in each (labels and augmentation draws do not change the network's
cost; the extra image read of the occlusion arm is in its images/s), so checkpoints at equal
steps are checkpoints at equal CPU. For each arm the script evaluates ``<run>/snap-<step>.keras``
(or ``checkpoints/step-<step>.keras``) on dev_val (GT boxes, flip, the same code as training's
evaluation; the run's own ``eval_log.csv`` row at that step is used where it has one), splits AP by people with fewer / at least 10 labelled keypoints, reads the run's
median images/s and training seconds up to that step from ``train_log.csv``, and merges the
rows into ``benchmarks/results/ablations_s256.json`` (one row per arm and step) before
printing the whole table.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_text

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "ablations_s256.json"
log = logging.getLogger("ablation_table")


def checkpoint_at(run: Path, step: int) -> Path | None:
    if run.is_file():  # a plain checkpoint (e.g. the common starting point, step 0)
        return run
    for p in (run / f"snap-{step}.keras", run / "checkpoints" / f"step-{step:09d}.keras"):
        if p.is_file():
            return p
    return None


def logged_eval(run: Path, step: int) -> dict | None:
    """The run's own evaluation at ``step`` (training's eval_log.csv, same code), or None."""
    path = run / "eval_log.csv"
    if not run.is_dir() or not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if int(r["step"]) == step and r.get("AP<10"):
                return {k: float(r[k]) for k in ("AP", "AP50", "AP75", "AR")} | {
                    "AP_lt10": float(r["AP<10"]), "AP_ge10": float(r["AP>=10"])}
    return None


def speed(run: Path, step: int) -> dict:
    if run.is_file():
        return {"images_per_s": None, "elapsed_s": 0.0}
    with open(run / "train_log.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    ips = [float(r["images_per_s"]) for r in rows[1:]]  # the first step traces the graph
    return {"images_per_s": round(float(np.median(ips)), 3) if ips else None,
            "elapsed_s": float(rows[-1]["elapsed_s"]) if rows else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--step", type=int, required=True)
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=RUN_DIR")
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from evopose_sdk.training import evaluate

    val = [{"annotations": str(args.data / s / "annotations.json"),
            "images": str(args.data / s / "images"), "split": "dev_val"}
           for s in ("coco128", "cocomini_train", "tinycoco")]
    table = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    for spec in args.arm:
        name, _, run = spec.partition("=")
        run = Path(run)
        scores = logged_eval(run, args.step)
        if scores is None:
            ckpt = checkpoint_at(run, args.step)
            if ckpt is None:
                log.error("%s: no checkpoint at step %d in %s", name, args.step, run)
                return 2
            res = evaluate.evaluate_model(ckpt, val, flip=True)
            scores = {k: res.stats[k] for k in ("AP", "AP50", "AP75", "AR")} | {
                "AP_lt10": res.groups["<10"]["AP"], "AP_ge10": res.groups[">=10"]["AP"]}
        cfg = {} if run.is_file() else json.loads((run / "config.json").read_text())
        row = {"arm": name, "step": args.step, "run": str(run),
               "recipe": cfg.get("comment", "the common starting point"),
               **speed(run, args.step),
               **{k: round(v, 4) for k, v in scores.items()}}
        table["rows"] = [r for r in table["rows"]
                         if (r["arm"], r["step"]) != (name, args.step)] + [row]
        log.info("%s @ %d: AP %.4f (<10 %.4f, >=10 %.4f)", name, args.step, row["AP"],
                 row["AP_lt10"], row["AP_ge10"])
    table["rows"].sort(key=lambda r: (r["step"], r["arm"]))
    table["comment"] = ("dev_val (300 COCO people), GT boxes, flip, DARK; all arms from the "
                        "shipped S rebuilt by tools/recover_keras.py, batch 32 at 256x192, "
                        "1 thread each on a shared 2-core machine; equal steps = equal CPU")
    atomic_write_text(args.out, json.dumps(table, indent=1) + "\n")
    print("| arm | step | img/s (1 thread, shared) | AP | AP50 | AP75 | AP <10 kp | AP >=10 kp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in table["rows"]:
        print(f"| {r['arm']} | {r['step']} | {r['images_per_s']} | {r['AP']:.3f} | "
              f"{r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP_lt10']:.3f} | {r['AP_ge10']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
