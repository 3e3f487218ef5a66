"""The search on a real two-node Ray cluster (``ray start --head`` + ``ray start --address`` on
this machine): the worker node is killed while it trains a child, the child is re-run on the
head; then the head itself is killed mid-child, the search stops with one line naming the
lost cluster, the cluster is started again, and ``evopose-search resume`` finishes the search
from its on-disk state. The search folder's ledger (search.json, child.json files, each
child's train_log.csv) must show every planned child trained and recorded exactly once.

Every kill waits on a state (the node has a child's train_log.csv open), never on a clock;
``benchmarks/stress_ray_head_loss.py`` repeats the scenario with kills at random moments.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from _search_helpers import needs_data, tiny_config

from evopose_sdk.training.search.head_loss import (
    finish,
    head_loss_run,
    ledger_problems,
    read_records,
    start_search,
    stop_problems,
    training_child,
    wait_for,
)
from evopose_sdk.training.search.local_cluster import LocalRayCluster, children_of, kill_all

log = logging.getLogger(__name__)

pytestmark = [
    needs_data,
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)"),
]

#: Generation 0 (the ancestor) + 2 generations of 2 children, 1 parent: 5 children.
GENERATIONS, CHILDREN = 2, 2
EXPECTED = [1, CHILDREN, CHILDREN]
STEPS = 2  # tiny_config: 2 training steps per child


@pytest.fixture
def cluster(tmp_path: Path):
    """A head and one worker node of 1 CPU each; every process killed on teardown."""
    c = LocalRayCluster(tmp_path)
    try:
        c.start_node("head", head=True)
        c.start_node("worker")
        c.wait_nodes(2)
        yield c
    finally:
        c.stop()


def test_search_survives_worker_node_and_head_loss(cluster: LocalRayCluster,
                                                   tmp_path: Path) -> None:
    run = head_loss_run(cluster, tmp_path, tiny_config(generations=GENERATIONS,
                                                       children=CHILDREN, parents=1))
    # no --workers: one child per node, each reserving a whole node's CPU (1)
    assert "2 children at once with {'num_cpus': 1.0}" in run.log, run.log[-3000:]
    # the worker node's child was trained again on the head: done, 2 attempts
    assert run.lost is not None and run.victim is not None
    rec = run.lost_record
    assert rec["attempts"] == 2 and rec["node_id"] == run.head_node != run.worker_node, rec
    # the head's loss: exit 1 with one line naming the lost cluster and how to resume; the
    # child in flight pending, the children done before it kept
    assert stop_problems(run) == []
    assert f"lost the Ray cluster at {cluster.address}" in run.log
    # the resumed search: every planned child trained and recorded once
    assert ledger_problems(run, EXPECTED, STEPS) == []
    assert run.victim not in run.done_before


def test_a_driver_ended_without_a_word_still_gets_the_one_line(cluster: LocalRayCluster,
                                                               tmp_path: Path) -> None:
    """Ray may end the driver itself when its node dies (its core worker exits the process,
    no Python runs): here the driver child is SIGKILLed with the head, and the
    ``evopose-search`` process that waits for it says the one line instead."""
    root = tmp_path / "search"
    cfg = tmp_path / "search_config.json"
    cfg.write_text(json.dumps(tiny_config(generations=1, children=CHILDREN, parents=1)))
    drv = start_search(["run", "--config", str(cfg), str(root)], cluster, tmp_path / "run.log")
    try:
        wait_for("the head training a child", lambda: training_child(cluster, "head", root), drv)
        driver = wait_for("the search's driver child", lambda: children_of(drv.pid), drv)
        kill_all(driver | cluster.processes("head"))
        rc = finish(drv, 300)
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.wait()
    text = (tmp_path / "run.log").read_text(errors="replace")
    assert rc == 1, text[-3000:]
    line = [ln for ln in text.splitlines() if "ERROR" in ln]
    assert len(line) == 1, text[-3000:]
    assert f"lost the Ray cluster at {cluster.address}: its head at" in line[0]
    assert "the search's Ray driver ended without a word (exit -9)" in line[0]
    assert f"evopose-search resume {root} --address {cluster.address}" in line[0]
    assert "Traceback" not in text
    assert all(r["status"] in ("pending", "done") for r in read_records(root).values())
