#!/usr/bin/env python3
"""Ray head loss, repeated: does every search whose cluster head dies stop with the one-line
"lost the Ray cluster" message, leave a consistent folder, and resume to the end?

Each run is the scenario of ``tests/test_search_ray_cluster.py`` (the same code,
``evopose_sdk.training.search.head_loss``) on a fresh two-node cluster of this machine (``ray start --head``
and ``ray start --address`` on 127.0.0.1, 1 CPU each) with the test's tiny search (128x96
children, 2 steps each, 5 children): the worker node is SIGKILLed while it trains a child,
the head while it trains a later one, each after a random delay of up to ``--max-delay``
seconds from the moment the node opened the child's train_log.csv (so kills land in the
build, the steps, the validation or just after a child). Then a new head and worker start
at the same address and ``evopose-search resume`` must finish the search with every child
recorded once and the children done before the loss kept.

    python benchmarks/stress_ray_head_loss.py --runs 10     # ~4 min a run on 2 busy cores

Prints a table and writes ``benchmarks/results/stress_ray_head_loss.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.training.search.head_loss import (
    HeadLossRun,
    ScenarioError,
    head_loss_run,
    ledger_problems,
    stop_problems,
    tiny_search_config,
)
from evopose_sdk.training.search.local_cluster import LocalRayCluster

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("EVOPOSE_DATA", REPO.parent / "shared" / "data"))

log = logging.getLogger("stress_ray_head_loss")
RESULTS = REPO / "benchmarks" / "results"
GENERATIONS, CHILDREN = 2, 2
EXPECTED = [1, CHILDREN, CHILDREN]
STEPS = 2


def _how(line: str) -> str:
    """How the driver learned of the loss, from its one-line message."""
    m = re.search(r"died \((\w+)", line)
    if m:
        return m.group(1)
    if "ended without a word" in line:
        return "driver ended by Ray (said by its parent)"
    return "head silent" if "has not answered" in line else "listed dead" if line else ""


def one_run(i: int, rng: random.Random, max_delay: float) -> dict:
    """One head-loss scenario on a fresh cluster; its row of the table."""
    delays: list[float] = []

    def delay() -> float:
        delays.append(round(rng.uniform(0.0, max_delay), 2))
        return delays[-1]

    t0 = time.monotonic()
    row: dict = {"run": i}
    with tempfile.TemporaryDirectory(prefix="evopose-stress-") as tmp:
        cluster = LocalRayCluster(Path(tmp))
        try:
            cluster.start_node("head", head=True)
            cluster.start_node("worker")
            cluster.wait_nodes(2)
            run = head_loss_run(cluster, Path(tmp), tiny_search_config(
                DATA_ROOT, generations=GENERATIONS, children=CHILDREN, parents=1), delay=delay)
            row.update(_judge(run))
        except (ScenarioError, RuntimeError, TimeoutError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        if row.get("problems") or row.get("error"):  # keep the logs of a failed run
            keep = Path(tempfile.mkdtemp(prefix=f"stress-ray-failed-{i}-"))
            shutil.copytree(tmp, keep / "run", ignore=shutil.ignore_patterns("*.keras"),
                            dirs_exist_ok=True)
            shutil.copytree(cluster.temp_dir, keep / "ray", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets"),
                            ignore_dangling_symlinks=True, symlinks=True)
            row["kept_logs"] = str(keep)
        cluster.stop()
    row["delays_s"] = delays
    row["seconds"] = round(time.monotonic() - t0, 1)
    return row


def _judge(run: HeadLossRun) -> dict:
    """The table's columns for one scenario."""
    line = next((ln for ln in run.log.splitlines() if "lost the Ray cluster" in ln), "")
    stop = stop_problems(run)
    ledger = ledger_problems(run, EXPECTED, STEPS)
    return {"worker_child": run.lost, "attempts": run.lost_record.get("attempts"),
            "head_child": run.victim, "rc": run.rc,
            "stop_s": None if run.stop_s is None else round(run.stop_s, 1),
            "how": _how(line), "clear_message": bool(line) and run.rc == 1,
            "folder_consistent": not stop, "resumed": not ledger,
            "message": line.split(": ERROR: ", 1)[-1], "problems": stop[:-1] + ledger,
            **({"log_tail": run.log[-1500:]} if stop else {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument("--max-delay", type=float, default=2.0,
                    help="seconds; each kill comes up to this long after the state it waits on")
    ap.add_argument("--out", type=Path, default=RESULTS / "stress_ray_head_loss.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    for i in range(args.runs):
        rows.append(one_run(i, random.Random(args.seed * 1000 + i), args.max_delay))
        r = rows[-1]
        log.info("run %d: %s", i, {k: v for k, v in r.items() if k != "message"})
    print("\n| run | worker killed (delay s) | attempts | head killed (delay s) | exit | "
          "stopped after s | reported as | clear line | folder | resumed | s |")
    print("| ---: | --- | ---: | --- | ---: | ---: | --- | --- | --- | --- | ---: |")
    for r in rows:
        d = r["delays_s"] + [None, None]
        print(f"| {r['run']} | {r.get('worker_child')} ({d[0]}) | {r.get('attempts')} | "
              f"{r.get('head_child')} ({d[1]}) | {r.get('rc')} | {r.get('stop_s')} | "
              f"{r.get('how', r.get('error', ''))} | {r.get('clear_message', False)} | "
              f"{r.get('folder_consistent', False)} | {r.get('resumed', False)} | "
              f"{r['seconds']} |")
    ok = sum(bool(r.get("clear_message") and r.get("folder_consistent") and r.get("resumed"))
             for r in rows)
    print(f"\n{ok} of {len(rows)} head losses ended with the one-line message, a consistent "
          "folder, and a resume that finished the search")
    result = {"benchmark": "stress_ray_head_loss", "seed": args.seed,
              "max_delay_s": args.max_delay,
              "config": f"tiny search: {GENERATIONS} generations of {CHILDREN} children + the "
                        f"ancestor, 128x96, {STEPS} steps each, coco128; head + worker node of "
                        "1 CPU each on 127.0.0.1",
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "runs": rows, "ok": ok, "total": len(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
