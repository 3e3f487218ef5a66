#!/usr/bin/env python3
"""Fuzzed input: corrupted images and videos through the API and the CLI.

The cases and checks are :mod:`evopose_sdk.fuzz`'s (seeds made from the real samples,
``python tools/fetch_samples.py``; truncations, bit flips, wrong headers, zero or huge
dimensions, wrong extensions...; a result or an :class:`~evopose_sdk.EvoPoseError` from the
API, exit 0 or 1 and no leftover file from the CLI). Cases run in worker processes, so a
crash (a signal from native code) is caught and counted for the case it hit; a sample of
cases also runs as a real ``evopose-infer`` subprocess (exit 0/1 and no "Traceback" on
stderr).

    python benchmarks/fuzz_inputs.py                       # 400 cases, seed 0
    python benchmarks/fuzz_inputs.py --cases 1000 --seed 7

Prints a table (outcomes per mutation) and writes ``benchmarks/results/fuzz_inputs.json``.
``tests/test_fuzz.py`` runs a small seeded set of the same cases in CI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from evopose_sdk.fuzz import (
    CLI_ARGS,
    MODEL,
    check_api,
    check_cli,
    check_cli_subprocess,
    make_cases,
    make_estimator,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / ".samples"
RESULTS = REPO / "benchmarks" / "results"

# ----------------------------------------------------------------------------- runner


def _worker(cases_file: Path, results_file: Path, start: int, out_root: Path) -> None:
    """Check cases from index ``start`` on, one JSON line per case (crash-safe progress)."""
    import logging

    logging.disable(logging.WARNING)  # the CLI's one-line errors are recorded, not printed
    cases = json.loads(cases_file.read_text())
    est = make_estimator()
    with open(results_file, "a", encoding="utf-8") as f:
        for case in cases[start:]:
            f.write(json.dumps({"id": case["id"], "started": True}) + "\n")
            f.flush()
            row = {"id": case["id"], **check_api(est, case), **check_cli(case, out_root)}
            f.write(json.dumps(row) + "\n")
            f.flush()


def run_cases(cases: list[dict], work: Path) -> list[dict]:
    """Check every case in worker processes; a worker that dies marks its case a crash."""
    cases_file, results_file = work / "cases.json", work / "results.jsonl"
    cases_file.write_text(json.dumps(cases))
    results_file.unlink(missing_ok=True)
    out_root = work / "out"
    out_root.mkdir(exist_ok=True)
    done: dict[int, dict] = {}
    start = 0
    while start < len(cases):
        proc = subprocess.run([sys.executable, __file__, "--worker", str(cases_file),
                               "--results-file", str(results_file), "--start", str(start),
                               "--work", str(out_root)], capture_output=True, text=True,
                              errors="replace", cwd=REPO)
        started = None
        for line in results_file.read_text().splitlines():
            row = json.loads(line)
            if row.get("started"):
                started = row["id"]
            else:
                done[row["id"]] = row
                started = None
        if proc.returncode == 0:
            break
        crashed = started if started is not None else start
        done[crashed] = {"id": crashed, "api": "CRASH", "cli": "CRASH",
                         "api_message": f"worker exit {proc.returncode}: "
                                        f"{proc.stderr.strip()[-300:]}"}
        start = crashed + 1
    return [{**case, **done.get(case["id"], {"api": "MISSING", "cli": "MISSING"})}
            for case in cases]


def summarise(rows: list[dict]) -> dict:
    table: dict = defaultdict(Counter)
    for r in rows:
        key = f"{r['kind']}:{r['mutation']}"
        table[key]["cases"] += 1
        for side in ("api", "cli"):
            table[key][f"{side}_{r[side]}"] += 1
        if "subprocess" in r:
            table[key][f"subprocess_{r['subprocess']}"] += 1
    failures = [r for r in rows if "FAIL" in (r["api"], r["cli"], r.get("subprocess"))
                or "CRASH" in (r["api"], r["cli"]) or "MISSING" in (r["api"], r["cli"])]
    return {"by_mutation": {k: dict(v) for k, v in sorted(table.items())},
            "failures": failures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=400, help="total cases (default: %(default)s)")
    p.add_argument("--video-share", type=float, default=0.3,
                   help="fraction of cases that are videos (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subprocess", type=int, default=20,
                   help="cases also run as a real evopose-infer process (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS / "fuzz_inputs.json")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--results-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(args.worker, args.results_file, args.start, args.work)
        return

    work = Path(tempfile.mkdtemp(prefix="fuzz_inputs_"))
    try:
        n_videos = int(round(args.cases * args.video_share))
        t0 = time.perf_counter()
        cases = make_cases(args.seed, args.cases - n_videos, n_videos, work, SAMPLES)
        rows = run_cases(cases, work)
        sub_ids = set(np.random.default_rng(args.seed).choice(
            len(rows), min(args.subprocess, len(rows)), replace=False).tolist())
        for r in rows:
            if r["id"] in sub_ids:
                r.update(check_cli_subprocess(r, work / "out", cwd=REPO))
        seconds = time.perf_counter() - t0
        summary = summarise(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ["cases", "api_ok", "api_error", "cli_ok", "cli_error"]
    print(f"| kind:mutation | {' | '.join(cols)} | failures |")
    print("| --- |" + " ---: |" * (len(cols) + 1))
    for key, counts in summary["by_mutation"].items():
        bad = sum(v for k, v in counts.items() if k.endswith(("FAIL", "CRASH", "MISSING")))
        print(f"| {key} | {' | '.join(str(counts.get(c, 0)) for c in cols)} | {bad} |")
    total = Counter()
    for counts in summary["by_mutation"].values():
        total.update(counts)
    print(f"\n{len(rows)} cases ({args.cases - n_videos} images, {n_videos} videos), seed "
          f"{args.seed}, {seconds:.0f} s: API ok {total['api_ok']} / clear error "
          f"{total['api_error']}; CLI exit 0 {total['cli_ok']} / exit 1 {total['cli_error']}; "
          f"{len(sub_ids)} real evopose-infer runs, {total['subprocess_ok']} clean; "
          f"failures (traceback, crash, leftover file): {len(summary['failures'])}")
    for r in summary["failures"]:
        print(f"  FAIL {r['kind']}:{r['mutation']} {Path(r['path']).name}: "
              f"{r.get('api_message', '')} {r.get('cli_message', '')} {r.get('subprocess_message', '')}")
    result = {"benchmark": "fuzz_inputs", "seed": args.seed, "cases": len(rows),
              "images": args.cases - n_videos, "videos": n_videos, "seconds": round(seconds, 1),
              "model": MODEL, "cli_args": CLI_ARGS, "subprocess_runs": len(sub_ids),
              "totals": dict(total), **summary}
    from evopose_sdk.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
