"""Ablation rows at equal CPU: dev_val AP of training runs' checkpoints at the same step.

    python benchmarks/ablation_table.py --step 50 \
        --arm control=runs/ablations/s256-control --arm occlusion=runs/ablations/s256-occlusion
    python benchmarks/ablation_table.py --cpu-s 3600 \
        --arm S=runs/ablations/xs_vs_s-s --arm XS=runs/ablations/xs_vs_s-xs

``--cpu-s`` compares arms whose steps cost different CPU (XS vs S): each arm's row is its
latest evaluated step whose training CPU seconds (``train_log.csv`` ``cpu_s``) are within the
budget. An arm trained in phases, each run starting from the previous one's final weights
(128x96 then 256x192), is given as ``NAME=PHASE1,PHASE2``: the earlier phases' CPU seconds
count against the budget and the row is the last phase's step.

    python benchmarks/ablation_table.py --cpu-s 1300 \
        --arm 256=runs/ablations/res_256_throughout \
        --arm 128-256=runs/ablations/res_128_then_256_p1,runs/ablations/res_128_then_256_p2

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
PEERS = Path("/tmp/peers/models")
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
    """Median images/s, wall and CPU seconds of ``run`` up to ``step``; ``cpu_s`` includes
    the data workers' CPU (``data_cpu_s``, logged since the teacher ran in them)."""
    if run.is_file():
        return {"images_per_s": None, "elapsed_s": 0.0, "cpu_s": 0.0}
    with open(run / "train_log.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    ips = [float(r["images_per_s"]) for r in rows[1:]]  # the first step traces the graph
    last = rows[-1] if rows else {}
    data = float(last.get("data_cpu_s") or 0.0)
    return {"images_per_s": round(float(np.median(ips)), 3) if ips else None,
            "elapsed_s": float(last["elapsed_s"]) if last else None,
            "cpu_s": float(last["cpu_s"]) + data if last.get("cpu_s") else None,
            "data_cpu_s": data}


def steps_within_cpu(run: Path, cpu_s: float) -> list[int]:
    """The steps of ``run`` evaluated in its eval_log.csv whose training CPU seconds
    (train_log.csv ``cpu_s`` + ``data_cpu_s``) are at most ``cpu_s``, in order; [0] for a
    plain checkpoint (the starting point)."""
    if run.is_file():
        return [0]
    from evopose_sdk.training.rundir import read_loss_curve

    with open(run / "eval_log.csv", newline="", encoding="utf-8") as f:
        evaluated = {int(r["step"]) for r in csv.DictReader(f)}
    steps, cpu = read_loss_curve(run, "cpu_s")
    _, data = read_loss_curve(run, "data_cpu_s")
    total = cpu + np.nan_to_num(data)
    return sorted(int(s) for s, c in zip(steps, total, strict=True)
                  if c <= cpu_s and int(s) in evaluated)


def step_within_cpu(run: Path, cpu_s: float) -> int | None:
    """The latest evaluated step of :func:`steps_within_cpu`, or None."""
    steps = steps_within_cpu(run, cpu_s)
    return steps[-1] if steps else None


def peer_rows(data: Path) -> list[dict]:
    """MoveNet Lightning and Thunder on the same dev_val GT boxes (1.25x square crops,
    flip-averaged as the teacher), AP and the two visibility groups."""
    from evopose_sdk.training import evaluate
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose, peer_predict

    rows = []
    for name in ("movenet_lightning", "movenet_thunder"):
        path = PEERS / f"{name}.tflite"
        if not path.is_file():
            log.warning("%s missing (bash ../shared/peers/get_peers.sh)", path)
            continue
        res = evaluate.evaluate_people(peer_predict(MoveNetSinglePose(path, 2)),
                                       dev_val_sources(data))
        rows.append({"arm": name, "step": 0, "run": str(path), **scores_of(res)})
    return rows


def dev_val_sources(data: Path) -> list[dict]:
    return [{"annotations": str(data / s / "annotations.json"),
             "images": str(data / s / "images"), "split": "dev_val"}
            for s in ("coco128", "cocomini_train", "tinycoco")]


def scores_of(res) -> dict:
    return {k: res.stats[k] for k in ("AP", "AP50", "AP75", "AR")} | {
        "AP_lt10": res.groups["<10"]["AP"], "AP_ge10": res.groups[">=10"]["AP"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    when = ap.add_mutually_exclusive_group(required=True)
    when.add_argument("--step", type=int, help="compare every arm at this step")
    when.add_argument("--cpu-s", type=float,
                      help="compare every arm at its latest evaluated step within this many "
                           "training CPU seconds")
    ap.add_argument("--arm", action="append", default=[], metavar="NAME=RUN_DIR")
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--average", type=int, default=1, metavar="N",
                    help="with --cpu-s: each arm's row is the mean of its last N evaluations "
                         "within the budget (less evaluation noise)")
    ap.add_argument("--comment", help="the JSON's description (default: kept, or the first "
                    "ablation's)")
    ap.add_argument("--peers", action="store_true",
                    help="add MoveNet Lightning and Thunder rows on the same boxes")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from evopose_sdk.training import evaluate

    val = dev_val_sources(args.data)
    table = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    for spec in args.arm:
        name, _, runs = spec.partition("=")
        *earlier, run = [Path(r) for r in runs.split(",")]
        phases = [speed(r, 10**12) for r in earlier]  # earlier phases, whole
        before_s = sum(ph["cpu_s"] or 0.0 for ph in phases)
        steps = ([args.step] if args.cpu_s is None
                 else steps_within_cpu(run, args.cpu_s - before_s)[-max(args.average, 1):])
        if not steps:
            log.error("%s: no evaluated step within %.0f CPU seconds in %s", name, args.cpu_s, run)
            return 2
        step = steps[-1]
        per_step = []
        for st in steps:
            scores = logged_eval(run, st)
            if scores is None:
                ckpt = checkpoint_at(run, st)
                if ckpt is None:
                    log.error("%s: no checkpoint at step %d in %s", name, st, run)
                    return 2
                scores = scores_of(evaluate.evaluate_model(ckpt, val, flip=True))
            per_step.append(scores)
        scores = {k: float(np.mean([p[k] for p in per_step])) for k in per_step[0]}
        cfg = {} if run.is_file() else json.loads((run / "config.json").read_text())
        row = {"arm": name, "step": step, "run": str(run),
               "recipe": cfg.get("comment", "the common starting point"),
               **speed(run, step),
               **{k: round(v, 4) for k, v in scores.items()}}
        if earlier:  # the row's CPU and time are the whole arm's
            row["earlier_phases"] = [str(r) for r in earlier]
            row["cpu_s"] = (row["cpu_s"] or 0.0) + before_s
            row["elapsed_s"] = (row["elapsed_s"] or 0.0) + sum(
                ph["elapsed_s"] or 0.0 for ph in phases)
        if args.cpu_s is not None:
            row["cpu_budget_s"] = args.cpu_s
        if len(steps) > 1:
            row["averaged_steps"] = steps
        table["rows"] = [r for r in table["rows"]
                         if (r["arm"], r["step"]) != (name, step)] + [row]
        log.info("%s @ %d: AP %.4f (<10 %.4f, >=10 %.4f)", name, step, row["AP"],
                 row["AP_lt10"], row["AP_ge10"])
    if args.peers:
        for row in peer_rows(args.data):
            table["rows"] = [r for r in table["rows"] if r["arm"] != row["arm"]] + [row]
    table["rows"].sort(key=lambda r: (r["step"], r["arm"]))
    table["comment"] = args.comment or table.get("comment") or ("dev_val (300 COCO people), GT boxes, flip, DARK; batch 32 at 256x192, "
                        "1 thread each on a shared 2-core machine. Rows of one network (the "
                        "first rounds: from the shipped S rebuilt by tools/recover_keras.py) "
                        "compare at equal steps = equal CPU; rows with cpu_budget_s (XS vs S, "
                        "from the main run's step-400 weights) at equal training CPU seconds "
                        "(cpu_s: what the row's step actually used)")
    atomic_write_text(args.out, json.dumps(table, indent=1) + "\n")
    print("| arm | step | training CPU s | img/s (1 thread, shared) | AP | AP50 | AP75 | "
          "AP <10 kp | AP >=10 kp |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in table["rows"]:
        cpu = f"{r['cpu_s']:.0f}" if r.get("cpu_s") is not None else "-"
        print(f"| {r['arm']} | {r['step']} | {cpu} | {r.get('images_per_s')} | {r['AP']:.3f} | "
              f"{r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP_lt10']:.3f} | {r['AP_ge10']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
