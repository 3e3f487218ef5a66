#!/usr/bin/env python3
"""Training resume at random kill points: does every killed-then-resumed run end exactly
where an uninterrupted one does?

One uninterrupted ``evopose-train`` run of a tiny config (EvoPose2D-XS at 64x64, batch 4,
coco128's 26 training people, 6 steps an epoch, ``--steps`` steps, a checkpoint every 3 steps) is the
reference. Then, for each of ``--points`` kill points drawn with ``--seed``: a fresh run is
started, killed with SIGKILL or SIGTERM (alternating) once its loss curve reaches a random
step, plus a random delay of up to 0.5 s so that kills also land inside a step or a
checkpoint write; the same command is run again (it resumes) to the last step. Each
resumed run's final checkpoint (every weight and the optimizer's step counter) and its
whole loss curve (``train_log.csv``) are compared with the reference.

    python benchmarks/resume_kill_points.py                    # 10 points: 21 runs, 70 min on 2 busy cores
    python benchmarks/resume_kill_points.py --points 3 --steps 9

Prints a table and writes ``benchmarks/results/resume_kill_points.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EVOPOSE_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0",
           KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")


def _train_cmd(out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "evopose_sdk.training.cli",
            "--config", "xs", "--data", str(DATA_ROOT), "--out", str(out),
            "--set", 'data.sources=["coco128"]', "--set", "model.input_hw=[64,64]",
            "--batch-size", "4", "--epochs", str(-(-steps // 6)), "--set", "train.warmup_epochs=1",
            "--lr", "1e-3", "--workers", "0", "--threads", "1", "--no-progress",
            "--set", "train.log_every_steps=1", "--set", "train.checkpoint_every_steps=3",
            "--set", "train.jit_compile=false",
            "--max-steps", str(steps), "--log-file", str(out / "train.log")]


def _run_to_end(out: Path, steps: int, timeout_s: float = 900) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(_train_cmd(out, steps), env=ENV, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise SystemExit(f"training run in {out} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def _logged_steps(out: Path) -> int:
    """Complete rows of the run's loss curve so far."""
    try:
        text = (out / "train_log.csv").read_text()
    except FileNotFoundError:
        return 0
    return max(0, text.count("\n") - 1)


def _kill_at(out: Path, steps: int, at_step: int, delay_s: float, sig: signal.Signals,
             timeout_s: float = 600) -> dict:
    proc = subprocess.Popen(_train_cmd(out, steps), env=ENV, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and _logged_steps(out) < at_step:
            if time.monotonic() > deadline:
                raise SystemExit(f"run in {out} stalled before step {at_step}")
            time.sleep(0.02)
        if proc.poll() is not None:
            raise SystemExit(f"run in {out} ended before step {at_step}: "
                             f"{proc.stderr.read()[-2000:]}")
        time.sleep(delay_s)
        logged = _logged_steps(out)
        proc.send_signal(sig)
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = json.loads((out / "state.json").read_text()) if (out / "state.json").is_file() else {}
    return {"logged_steps_at_kill": logged, "exit_code": rc,
            "checkpoint_step_at_kill": state.get("step", 0)}


def _final(out: Path) -> tuple[list[np.ndarray], int, np.ndarray, np.ndarray, np.ndarray]:
    import keras

    from evopose_sdk.training.rundir import load_checkpoint, read_loss_curve

    state = json.loads((out / "state.json").read_text())
    model = load_checkpoint(out / state["checkpoint"])
    iterations = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    steps, loss = read_loss_curve(out)
    _, lr = read_loss_curve(out, "lr")
    return [np.asarray(w) for w in model.get_weights()], iterations, steps, loss, lr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=10, help="kill points (default: %(default)s)")
    p.add_argument("--steps", type=int, default=12,
                   help="steps per run, 6 per epoch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=15, help="draws the kill points")
    p.add_argument("--out", type=Path, default=RESULTS / "resume_kill_points.json")
    args = p.parse_args()
    if not (DATA_ROOT / "coco128" / "annotations.json").is_file():
        raise SystemExit(f"coco128 data not found under {DATA_ROOT} (set EVOPOSE_DATA)")

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="resume_kill_points_"))
    rows = []
    try:
        ref_dir = work / "reference"
        ref_s = _run_to_end(ref_dir, args.steps)
        ref_w, ref_it, ref_steps, ref_loss, ref_lr = _final(ref_dir)
        print(f"reference: {args.steps} steps in {ref_s:.0f} s (with start-up), final loss "
              f"{ref_loss[-1]:.6f}")
        # a loaded machine slows every run alike: allow several reference runs before a run
        # counts as stalled
        limit_s = max(600.0, 5 * ref_s)
        for i in range(args.points):
            sig = (signal.SIGKILL, signal.SIGTERM)[i % 2]
            at = int(rng.integers(1, args.steps))
            delay = float(rng.uniform(0.0, 0.5))
            run_dir = work / f"point{i:02d}"
            killed = _kill_at(run_dir, args.steps, at, delay, sig, limit_s)
            resume_s = _run_to_end(run_dir, args.steps, limit_s)
            log = (run_dir / "train.log").read_text()
            resumed_from = killed["checkpoint_step_at_kill"]
            w, it, steps, loss, lr = _final(run_dir)
            weight_diff = max(float(np.max(np.abs(a - b))) if a.size else 0.0
                              for a, b in zip(w, ref_w, strict=True))
            row = {
                "point": i, "signal": sig.name, "kill_after_step": at,
                "extra_delay_s": round(delay, 3), **killed,
                "resumed_from_step": resumed_from,
                "resume_logged": f"at step {resumed_from}" in log if resumed_from else None,
                "resume_run_s": round(resume_s, 1),
                "optimizer_steps": it,
                "steps_match": steps.tolist() == ref_steps.tolist(),
                "weights_bitwise_equal": all(np.array_equal(a, b)
                                             for a, b in zip(w, ref_w, strict=True)),
                "weights_max_abs_diff": weight_diff,
                "loss_curve_max_abs_diff": float(np.max(np.abs(loss - ref_loss)))
                if len(loss) == len(ref_loss) else None,
                "lr_curve_equal": bool(len(lr) == len(ref_lr) and np.array_equal(lr, ref_lr)),
            }
            row["same_as_uninterrupted"] = bool(
                row["steps_match"] and it == ref_it and row["weights_bitwise_equal"]
                and row["loss_curve_max_abs_diff"] == 0.0 and row["lr_curve_equal"])
            rows.append(row)
            print(f"  point {i}: {sig.name:7s} after step {at} (+{delay:.2f} s): logged "
                  f"{killed['logged_steps_at_kill']}, exit {killed['exit_code']}, resumed from "
                  f"step {resumed_from}; same as uninterrupted: {row['same_as_uninterrupted']}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print()
    print("| point | signal | killed after step | checkpoint at kill | exit | resumed from | "
          "optimizer steps | weights | loss curve max diff |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        weights = "identical" if r["weights_bitwise_equal"] else f"max diff {r['weights_max_abs_diff']:.2e}"
        print(f"| {r['point']} | {r['signal']} | {r['kill_after_step']} (logged "
              f"{r['logged_steps_at_kill']}) | {r['checkpoint_step_at_kill']} | {r['exit_code']} | "
              f"{r['resumed_from_step']} | {r['optimizer_steps']} | {weights} | "
              f"{r['loss_curve_max_abs_diff']} |")
    same = sum(r["same_as_uninterrupted"] for r in rows)
    print(f"\n{same} of {len(rows)} killed-and-resumed runs end with the same weights (bitwise), "
          f"optimizer step count, LR and loss curve as the uninterrupted run")
    result = {
        "benchmark": "resume_kill_points", "seed": args.seed, "steps": args.steps,
        "config": "xs, input 64x64, batch 4, coco128 train (26 people), checkpoint every 3 "
                  "steps, 1 thread, no XLA, TensorFlow CPU",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "reference": {"optimizer_steps": ref_it, "final_loss": float(ref_loss[-1])},
        "points": rows, "same_as_uninterrupted": same, "total": len(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from evopose_sdk.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
