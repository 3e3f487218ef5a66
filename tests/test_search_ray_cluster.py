"""The search on a real two-node Ray cluster (``ray start --head`` + ``ray start --address`` on
this machine): the worker node is killed while it trains a child, the child is re-run on the
head; then the head itself is killed mid-child, the cluster is started again, and
``evopose-search resume`` finishes the search from its on-disk state. The search folder's
ledger (search.json, child.json files, each child's train_log.csv) must show every planned
child trained and recorded exactly once.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _ray_cluster import LocalRayCluster, open_files
from _search_helpers import needs_data, tiny_config

log = logging.getLogger(__name__)

pytestmark = [
    needs_data,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)"),
]

#: Generation 0 (the ancestor) + 2 generations of 2 children, 1 parent: 5 children.
GENERATIONS, CHILDREN = 2, 2
EXPECTED = [1, CHILDREN, CHILDREN]
SEARCH_CLI = [sys.executable, "-m", "evopose_sdk.training.search.cli"]


@pytest.fixture
def cluster(tmp_path: Path):
    """A head and one worker node of 1 CPU each; every process killed on teardown."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'evopose-sdk[search]')")
    c = LocalRayCluster(tmp_path)
    try:
        c.start_node("head", head=True)
        c.start_node("worker")
        c.wait_nodes(2)
        yield c
    finally:
        c.stop()


def _records(root: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((root / "children").glob("*/child.json")):
        try:
            out[f.parent.name] = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):  # being replaced right now
            continue
    return out


def _training_child(cluster: LocalRayCluster, node: str, root: Path) -> str | None:
    """Id of the child node ``node`` is training right now (its train_log.csv is open)."""
    logs = str(root / "children")
    for paths in open_files(cluster.processes(node)).values():
        for p in paths:
            if p.startswith(logs) and p.endswith("/run/train_log.csv"):
                return Path(p).parents[1].name
    return None


def _wait(what: str, cond: Callable[[], Any], proc: subprocess.Popen, timeout: float,
          poll: float = 0.05) -> Any:
    """Poll ``cond()`` until it returns a truthy value; fail if ``proc`` exits first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        if proc.poll() is not None:
            pytest.fail(f"the search exited (rc {proc.returncode}) before {what}")
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _driver(args: list[str], cluster: LocalRayCluster, tmp_path: Path,
            name: str) -> subprocess.Popen:
    """``evopose-search ARGS --address`` the cluster, its output in ``tmp_path/NAME.log``."""
    out = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115
    try:
        return subprocess.Popen(SEARCH_CLI + args + ["--address", cluster.address],
                                stdout=out, stderr=subprocess.STDOUT, env=cluster.env,
                                cwd=tmp_path)
    finally:
        out.close()


def test_search_survives_worker_node_and_head_loss(cluster: LocalRayCluster,
                                                   tmp_path: Path) -> None:
    t_start = time.time()
    root = tmp_path / "search"
    cfg = tmp_path / "search_config.json"
    cfg.write_text(json.dumps(tiny_config(generations=GENERATIONS, children=CHILDREN,
                                          parents=1)))
    drv = _driver(["run", "--config", str(cfg), str(root)], cluster, tmp_path, "run")
    try:
        # 1. the worker node dies while it trains a child
        lost = _wait("the worker node training a child",
                     lambda: _training_child(cluster, "worker", root), drv, 600)
        dead_node, head_node = cluster.node_id("worker"), cluster.node_id("head")
        cluster.kill_node("worker")
        log.info("killed the worker node while it trained %s", lost)
        # the driver trains it again on the head: done, 2 attempts
        rec = _wait(f"{lost} re-run", lambda: (_records(root).get(lost, {}).get("status")
                                              == "done" and _records(root)[lost]), drv, 600)
        assert rec["attempts"] == 2 and rec["node_id"] == head_node != dead_node, rec
        # 2. the head dies while it trains a later child
        victim = _wait("the head training another child",
                       lambda: _training_child(cluster, "head", root), drv, 600)
        done_before = {cid: r["finished_at"] for cid, r in _records(root).items()
                       if r["status"] == "done"}
        cluster.kill_node("head")
        t_kill = time.time()
        log.info("killed the head while it trained %s", victim)
        try:  # the driver gives up after RayExecutor's head_timeout_s (15 s)
            rc = drv.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail("the search did not exit within 120 s of the head's death")
        log.info("the search exited %.0f s after the head died", time.time() - t_kill)
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.wait()
    text = (tmp_path / "run.log").read_text(errors="replace")
    # no --workers: one child per node, each reserving a whole node's CPU (1)
    assert "2 children at once with {'num_cpus': 1.0}" in text, text[-3000:]
    assert rc == 1, text[-3000:]  # a runtime failure, said in one line
    assert "lost the Ray cluster" in text, text[-3000:]
    assert f"evopose-search resume {root} --address {cluster.address}" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert victim not in done_before
    assert _records(root)[victim]["status"] == "pending"
    # 3. a new head (same address) and worker; the search resumes from its folder
    cluster.start_node("head2", head=True)
    cluster.start_node("worker2")
    cluster.wait_nodes(2)
    drv = _driver(["resume", str(root)], cluster, tmp_path, "resume")
    try:
        rc = drv.wait(timeout=600)
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.wait()
    text = (tmp_path / "resume.log").read_text(errors="replace")
    assert rc == 0, text[-3000:]
    # 4. the ledger: every planned child trained and recorded once
    state = json.loads((root / "search.json").read_text())
    assert state["status"] == "finished"
    gens = state["generations"]
    assert [len(g["children"]) for g in gens] == EXPECTED
    assert all(g["finished"] and len(g["selected"]) == 1 for g in gens)
    ids = [c for g in gens for c in g["children"]]
    assert len(set(ids)) == len(ids) == sum(EXPECTED)
    recs = _records(root)
    assert sorted(recs) == sorted(ids), "a child folder that search.json does not list"
    assert len({r["genotype_str"] for r in recs.values()}) == len(ids)
    for cid, r in recs.items():
        assert r["status"] == "done" and r["steps"] == 2, r
        assert (root / "children" / cid / "model.keras").is_file()
        rows = (root / "children" / cid / "run" / "train_log.csv").read_text().splitlines()
        assert len(rows) == 1 + 2, (cid, rows)  # header + 2 steps: no step logged twice
    for cid, t in done_before.items():  # children finished before the head died: kept
        assert recs[cid]["finished_at"] == t, cid
    assert recs[lost]["attempts"] == 2
    assert recs[victim]["status"] == "done"
    wall = time.time() - t_start
    log.info("two-node search with a node and a head loss: %.0f s", wall)

