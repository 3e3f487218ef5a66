"""The default model's learning curve: dev_val AP against training CPU-hours.

    python benchmarks/learning_curve.py                              # table + PNG from the ledger
    python benchmarks/learning_curve.py --add-run runs/main --stage "stage 5 (users' people)"

The ledger ``benchmarks/results/learning_curve.json`` holds one point per evaluation of the
model line that ships as the default: cumulative training hours on the project's 2-core CPU
machine (wall-clock hours of ``evopose-train``, evaluation excluded), dev_val AP with
ground-truth boxes and flip test, and AP on people with fewer / at least 10 labelled
keypoints. ``--add-run`` appends the rows of a run's ``eval_log.csv`` (its ``cpu_s`` / 2, i.e.
hours of the whole 2-core machine, or its wall ``elapsed_s`` where no CPU time was logged,
added to the ledger's hours when the run was first added; points already there are skipped),
so each session's
training extends the same curve. The summary prints the slope of the last ``--window`` hours
and two extrapolations to AP 0.40 (a straight line through the window, and AP linear in
log-hours through all points since the first 256x192 stage), and writes the PNG beside the
ledger.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_text

HERE = Path(__file__).resolve().parent
LEDGER = HERE / "results" / "learning_curve.json"
TARGET = 0.40
log = logging.getLogger("learning_curve")


def read_ledger(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def add_run(ledger: dict, run_dir: Path, stage: str) -> int:
    """Append the eval rows of ``run_dir/eval_log.csv``; returns how many were new."""
    points = ledger["points"]
    runs = ledger.setdefault("runs", {})
    key = str(run_dir.resolve())
    if key not in runs:  # a run's hours start where the ledger ended when it was added
        runs[key] = {"stage": stage, "start_hours": points[-1]["cpu_hours"] if points else 0.0}
    base = runs[key]["start_hours"]
    seen = {(p.get("run"), p.get("step")) for p in points}
    added = 0
    with open(run_dir / "eval_log.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            if (key, step) in seen:
                continue
            # machine-hours of the 2-core box: CPU seconds / 2 where logged (honest on a shared
            # machine), else wall seconds
            secs = (float(row["cpu_s"]) / 2.0 if row.get("cpu_s") else float(row["elapsed_s"]))
            points.append({
                "cpu_hours": round(base + secs / 3600.0, 4),
                "AP": float(row["AP"]), "AP_lt10": float(row.get("AP<10", "nan")),
                "AP_ge10": float(row.get("AP>=10", "nan")), "stage": runs[key]["stage"],
                "input": "256x192", "run": key, "step": step})
            added += 1
    points.sort(key=lambda p: p["cpu_hours"])
    return added


def summary(ledger: dict, window: float) -> dict:
    """Slope (AP per CPU-hour) over the last ``window`` hours and extrapolated hours to 0.40."""
    pts = [p for p in ledger["points"] if p.get("input") == "256x192"]
    if len(pts) < 2:
        return {}
    h = np.array([p["cpu_hours"] for p in pts])
    ap = np.array([p["AP"] for p in pts])
    last = h >= h[-1] - window
    out = {"hours": round(float(h[-1]), 3), "best_AP": round(float(ap.max()), 4)}
    if last.sum() >= 2 and np.ptp(h[last]) > 0:
        slope, icpt = np.polyfit(h[last], ap[last], 1)
        out["slope_AP_per_hour"] = round(float(slope), 4)
        out["window_hours"] = round(float(np.ptp(h[last])), 3)
        if slope > 0:
            out["hours_to_0.40_linear"] = round(float((TARGET - icpt) / slope), 1)
    if len(h) >= 3:
        a, b = np.polyfit(np.log(h), ap, 1)
        out["log_fit"] = {"AP_per_e_fold": round(float(a), 4)}
        if a > 0:
            out["hours_to_0.40_log"] = round(float(math.exp((TARGET - b) / a)), 1)
    return out


def plot(ledger: dict, png: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pts = ledger["points"]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for key, label, style in (("AP", "all people", "o-"), ("AP_ge10", ">= 10 keypoints", "s--"),
                              ("AP_lt10", "< 10 keypoints", "^--")):
        xs = [p["cpu_hours"] for p in pts if math.isfinite(p.get(key, float("nan")))]
        ys = [p[key] for p in pts if math.isfinite(p.get(key, float("nan")))]
        if xs:
            ax.plot(xs, ys, style, ms=4, label=label)
    for name, value in (ledger.get("peers") or {}).items():
        ax.axhline(value, color="grey", lw=0.8, ls=":")
        ax.text(0.02, value + 0.005, f"{name} {value:.3f}", color="grey", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("training hours on 2 CPU cores (cumulative)")
    ax.set_ylabel("dev_val AP (GT boxes, flip)")
    ax.set_title("evopose2d-s: dev_val AP against CPU-hours")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.72), fontsize=8)
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--ledger", type=Path, default=LEDGER)
    ap.add_argument("--add-run", type=Path, help="a run folder with eval_log.csv")
    ap.add_argument("--stage", default="continued", help="stage label of --add-run's points")
    ap.add_argument("--window", type=float, default=2.0, help="hours for the slope")
    ap.add_argument("--png", type=Path, help="default: the ledger's name with .png")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.ledger.is_file():
        log.error("no ledger at %s", args.ledger)
        return 2
    ledger = read_ledger(args.ledger)
    if args.add_run:
        if not (args.add_run / "eval_log.csv").is_file():
            log.error("%s has no eval_log.csv", args.add_run)
            return 2
        log.info("added %d points from %s", add_run(ledger, args.add_run, args.stage),
                 args.add_run)
    ledger["summary"] = summary(ledger, args.window)
    atomic_write_text(args.ledger, json.dumps(ledger, indent=1) + "\n")
    plot(ledger, args.png or args.ledger.with_suffix(".png"))
    print("| CPU-hours | stage | input | AP | AP <10 kp | AP >=10 kp |")
    print("|---:|---|---|---:|---:|---:|")
    def f(v: float) -> str:
        return f"{v:.3f}" if math.isfinite(v) else "-"

    for p in ledger["points"]:
        print(f"| {p['cpu_hours']:.2f} | {p['stage']} | {p.get('input', '')} | {f(p['AP'])} | "
              f"{f(p.get('AP_lt10', float('nan')))} | {f(p.get('AP_ge10', float('nan')))} |")
    print(json.dumps(ledger["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
