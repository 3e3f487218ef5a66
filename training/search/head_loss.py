"""The Ray head-loss scenario on a :class:`LocalRayCluster`: the worker node is killed while
it trains a child, then the head while it trains a later one; the search must stop with one
line naming the lost cluster and ``evopose-search resume`` must finish it on a new cluster.
:func:`head_loss_run` runs it and :func:`stop_problems` / :func:`ledger_problems` judge the
outcome; ``tests/test_search_ray_cluster.py`` asserts them and
``benchmarks/stress_ray_head_loss.py`` repeats the scenario with kills at random moments.
:func:`tiny_search_config` is the tiny search both use.

Linux only (reads ``/proc``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evopose_sdk.errors import EvoPoseError
from evopose_sdk.training.search.local_cluster import LocalRayCluster, open_files

log = logging.getLogger(__name__)

SEARCH_CLI = [sys.executable, "-m", "evopose_sdk.training.search.cli"]


def tiny_search_config(data_root: str | Path, generations: int = 2, **extra) -> dict:
    """A search of narrow 128x96 children trained 2 steps each on the coco128 photos under
    ``data_root``; ``extra`` keys replace the search config's."""
    cfg = {
        "seed": 3, "generations": generations, "children": 4, "parents": 2,
        "input_hw": [128, 96], "ancestor_filter_scale": 0.25,
        "ancestor_epochs": 1, "child_epochs": 1,
        "train_config": {"model": {"head_channels": 16, "weight_decay": 0.0}},
        "train_overrides": [f"data.root={data_root}", 'data.sources=["coco128"]',
                            "train.batch_size=4", "train.steps_per_epoch=2",
                            "train.warmup_epochs=0", "train.lr=1e-3", "data.workers=0",
                            "train.precision=float32", "train.jit_compile=false",
                            "train.log_every_steps=100"],
        "val_max_people": 8, "val_batch_size": 8, "eager": True,
    }
    cfg.update(extra)
    return cfg


class ScenarioError(EvoPoseError, RuntimeError):
    """The search exited, or never reached a state the scenario waits for."""


def read_records(root: Path) -> dict[str, dict]:
    """``{child id: child.json}`` of the search folder ``root``."""
    out = {}
    for f in sorted((root / "children").glob("*/child.json")):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):  # being replaced right now
            continue
    return out


def training_child(cluster: LocalRayCluster, node: str, root: Path) -> str | None:
    """Id of the child node ``node`` is training right now (its train_log.csv is open)."""
    logs = str(root / "children")
    for paths in open_files(cluster.processes(node)).values():
        for p in paths:
            if p.startswith(logs) and p.endswith("/run/train_log.csv"):
                return Path(p).parents[1].name
    return None


def wait_for(what: str, cond: Callable[[], Any], proc: subprocess.Popen,
             timeout: float = 600.0) -> Any:
    """Poll ``cond()`` until it returns a truthy value and return that; raise
    :class:`ScenarioError` if ``proc`` exits first (or after ``timeout`` s, a hang guard)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = cond()
        if v:
            return v
        if proc.poll() is not None:
            raise ScenarioError(f"the search exited (rc {proc.returncode}) before {what}")
        time.sleep(0.05)
    raise ScenarioError(f"no {what} within {timeout:.0f} s")


def start_search(args: list[str], cluster: LocalRayCluster, log_file: Path) -> subprocess.Popen:
    """``evopose-search ARGS --address`` the cluster, its output in ``log_file``."""
    with open(log_file, "wb") as out:
        return subprocess.Popen(SEARCH_CLI + args + ["--address", cluster.address],
                                stdout=out, stderr=subprocess.STDOUT, env=cluster.env,
                                cwd=log_file.parent)


def finish(proc: subprocess.Popen, timeout: float) -> int | None:
    """``proc``'s exit code, or None when it ran past ``timeout`` s (then it is killed)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


@dataclass
class HeadLossRun:
    """What :func:`head_loss_run` saw; the checks below judge it."""

    root: Path
    address: str
    head_node: str = ""
    worker_node: str = ""
    lost: str | None = None  # the child the worker node trained when it was killed
    lost_record: dict = field(default_factory=dict)  # its record once trained again
    victim: str | None = None  # the child the head trained when it was killed
    done_before: dict[str, float] = field(default_factory=dict)  # finished_at of done ones
    records_after: dict[str, dict] = field(default_factory=dict)  # right after the head loss
    rc: int | None = None  # the search's exit code after the head loss (None: hung)
    stop_s: float | None = None  # seconds from the head's death to the search's exit
    log: str = ""
    resume_rc: int | None = None
    resume_log: str = ""


def head_loss_run(cluster: LocalRayCluster, tmp: Path, config: dict,
                  delay: Callable[[], float] | None = None) -> HeadLossRun:
    """The search on a head and a worker node: the worker node is killed while it trains a
    child and that child must be trained again on the head; the head is killed while it
    trains a later child and the search must stop; a new head and worker start at the same
    address and ``evopose-search resume`` finishes the search.

    Each kill waits on a state (the node has a child's train_log.csv open); ``delay()``, when
    given (the stress script), adds that many seconds before each kill, so that it lands at
    a random moment of the child's training or just after it.

    Raises:
        ScenarioError: the search exited before a kill, or a hang guard ran out.
    """
    root = tmp / "search"
    cfg = tmp / "search_config.json"
    cfg.write_text(json.dumps(config))
    run = HeadLossRun(root=root, address=cluster.address)
    drv = start_search(["run", "--config", str(cfg), str(root)], cluster, tmp / "run.log")
    try:
        # 1. the worker node dies while it trains a child
        wait_for("the worker node training a child",
                 lambda: training_child(cluster, "worker", root), drv)
        run.worker_node, run.head_node = cluster.node_id("worker"), cluster.node_id("head")
        if delay is not None:
            time.sleep(delay())
        run.lost = training_child(cluster, "worker", root)
        cluster.kill_node("worker")
        log.info("killed the worker node while it trained %s", run.lost)
        if run.lost is not None:  # the driver trains it again on the head
            lost = run.lost
            run.lost_record = wait_for(
                f"{lost} trained again",
                lambda: read_records(root).get(lost, {}).get("status") == "done"
                and read_records(root)[lost], drv)
        # 2. the head dies while it trains a later child
        wait_for("the head training another child",
                 lambda: training_child(cluster, "head", root) not in (None, run.lost), drv)
        if delay is not None:
            time.sleep(delay())
        run.victim = training_child(cluster, "head", root)
        run.done_before = {cid: r["finished_at"] for cid, r in read_records(root).items()
                           if r["status"] == "done"}
        cluster.kill_node("head")
        t_kill = time.monotonic()
        log.info("killed the head while it trained %s", run.victim)
        run.rc = finish(drv, 300)  # a hang guard: the search stops within head_timeout_s
        run.stop_s = time.monotonic() - t_kill
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.wait()
    run.log = (tmp / "run.log").read_text(errors="replace")
    run.records_after = read_records(root)
    # 3. a new head (same address) and worker; the search resumes from its folder
    cluster.start_node("head2", head=True)
    cluster.start_node("worker2")
    cluster.wait_nodes(2)
    drv = start_search(["resume", str(root)], cluster, tmp / "resume.log")
    run.resume_rc = finish(drv, 900)
    run.resume_log = (tmp / "resume.log").read_text(errors="replace")
    return run


def stop_problems(run: HeadLossRun) -> list[str]:
    """What is wrong with how the search stopped after the head loss: exit 1, one line
    naming the lost cluster and the resume command, no traceback, the child in flight still
    pending and every child done before kept (an empty list: nothing)."""
    out = []
    tail = run.log[-3000:]
    if run.rc != 1:
        out.append(f"exit code {run.rc}, not 1")
    if "lost the Ray cluster" not in run.log:
        out.append("no 'lost the Ray cluster' line")
    if f"evopose-search resume {run.root} --address {run.address}" not in run.log:
        out.append("no resume command")
    if "Traceback" in run.log:
        out.append("a traceback")
    if run.victim is not None and run.records_after.get(run.victim, {}).get("status") != "pending":
        out.append(f"{run.victim}, in flight, is not pending")
    for cid, t in run.done_before.items():
        if run.records_after.get(cid, {}).get("finished_at") != t:
            out.append(f"{cid}, done before the head died, changed")
    return out + ([f"log tail: {tail}"] if out else [])


def ledger_problems(run: HeadLossRun, expected: list[int], steps: int) -> list[str]:
    """What is wrong with the resumed search's folder: it must have finished with every
    planned child (``expected[g]`` in generation g) trained ``steps`` steps and recorded
    exactly once, and the children done before the head died kept as they were."""
    root, out = run.root, []
    if run.resume_rc != 0:
        return [f"resume exit code {run.resume_rc}: {run.resume_log[-3000:]}"]
    state = json.loads((root / "search.json").read_text())
    gens = state["generations"]
    if state["status"] != "finished":
        out.append(f"search.json status {state['status']}")
    if [len(g["children"]) for g in gens] != expected:
        out.append(f"children per generation {[len(g['children']) for g in gens]}")
    if not all(g["finished"] and g["selected"] for g in gens):
        out.append("a generation not finished or without parents")
    ids = [c for g in gens for c in g["children"]]
    recs = read_records(root)
    if len(set(ids)) != len(ids) or sorted(recs) != sorted(ids):
        out.append(f"children {sorted(recs)} vs search.json {ids}")
    if len({r["genotype_str"] for r in recs.values()}) != len(recs):
        out.append("a genotype trained twice")
    for cid, r in recs.items():
        if r["status"] != "done" or r["steps"] != steps:
            out.append(f"{cid}: status {r['status']}, steps {r.get('steps')}")
            continue
        if not (root / "children" / cid / "model.keras").is_file():
            out.append(f"{cid}: no model.keras")
        rows = (root / "children" / cid / "run" / "train_log.csv").read_text().splitlines()
        if len(rows) != 1 + steps:
            out.append(f"{cid}: {len(rows) - 1} train_log rows for {steps} steps")
    for cid, t in run.done_before.items():
        if recs.get(cid, {}).get("finished_at") != t:
            out.append(f"{cid}, done before the head died, trained again")
    return out
