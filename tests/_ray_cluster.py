"""A real multi-node Ray cluster on this machine for tests: ``ray start --head`` and
``ray start --address`` processes, each node in a process group of its own so that a test
can kill one node (like a machine that dies) and tear everything down without ``ray stop``,
which would stop every Ray of this user. Also the head-loss scenario that
``tests/test_search_ray_cluster.py`` asserts and ``benchmarks/stress_ray_head_loss.py``
repeats: :func:`head_loss_run` and the checks of its outcome.

Linux only (reads ``/proc``). Every process a node starts is found by its process group or
as a descendant of one (Ray workers call ``setsid``), and killed with SIGKILL. Only the
loopback address is used (Ray itself names this machine's own address to its processes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
SEARCH_CLI = [sys.executable, "-m", "evopose_sdk.training.search.cli"]


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_table() -> dict[int, tuple[int, int]]:
    """``{pid: (ppid, pgid)}`` of every process visible in ``/proc``."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        table[int(entry)] = (int(fields[1]), int(fields[2]))
    return table


def group_and_descendants(pgid: int) -> set[int]:
    """Processes of process group ``pgid`` and all their descendants (any group)."""
    table = process_table()
    found = {pid for pid, (_, g) in table.items() if g == pgid}
    grew = True
    while grew:
        more = {pid for pid, (pp, _) in table.items() if pp in found} - found
        found |= more
        grew = bool(more)
    return found


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    return {p for p, (pp, _) in process_table().items() if pp == pid}


def open_files(pids: set[int]) -> dict[int, list[str]]:
    """Paths each process has open (``/proc/PID/fd``); processes that vanished are skipped."""
    out = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        paths = []
        for fd in fds:
            try:
                paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
        out[pid] = paths
    return out


def with_environ(marker: bytes) -> set[int]:
    """Processes whose environment holds ``marker`` (``NAME=value``) exactly."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.add(int(entry))
    return found


def kill_all(pids: set[int]) -> None:
    """SIGKILL each of ``pids`` (those already gone are skipped)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def running(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (gone or zombie ones are left out)."""
    out = set()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[0] != "Z":
            out.add(pid)
    return out


class LocalRayCluster:
    """Ray nodes started with ``ray start`` in process groups of their own.

    All nodes share one ``--temp-dir`` (a short path: Ray's Unix socket paths must stay
    under 107 bytes, which a pytest ``tmp_path`` exceeds) and one random auth token
    (``RAY_AUTH_MODE=token``), so no other Ray on this machine is touched or can join.

    Args:
        log_dir: where each ``ray start`` writes its output (``<node>.out``).
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="evr", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_USAGE_STATS_ENABLED="0")
        self.nodes: dict[str, int] = {}  # name -> process group id
        self._all_groups: list[int] = []

    def start_node(self, name: str, head: bool = False, num_cpus: int = 1,
                   timeout: float = 180.0) -> None:
        """``ray start`` one node (the head when ``head``) and wait until it is up."""
        args = [RAY, "start", "--num-cpus", str(num_cpus), "--temp-dir", str(self.temp_dir),
                "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                "--dashboard-agent-listen-port", str(free_port()),
                "--metrics-export-port", str(free_port())]
        if head:
            args += ["--head", "--port", str(self.port), "--include-dashboard=false",
                     "--dashboard-port", str(free_port()),
                     "--ray-client-server-port", str(free_port())]
        else:
            args += ["--address", self.address]
        out = open(self.log_dir / f"{name}.out", "ab")  # noqa: SIM115
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        out.close()
        self.nodes[name] = proc.pid  # its own session: process group id == pid
        self._all_groups.append(proc.pid)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            text = (self.log_dir / f"{name}.out").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"ray start of node {name} failed (rc {rc}):\n{text}")

    def alive_nodes(self) -> int:
        """Nodes the head lists as active (``ray status``); 0 when it does not answer."""
        try:
            r = subprocess.run([RAY, "status", "--address", self.address], env=self.env,
                               capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return 0
        active = r.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
        return len(re.findall(r"node_[0-9a-f]+", active)) if r.returncode == 0 else 0

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        """Wait until the head lists ``n`` active nodes."""
        t0 = time.time()
        while self.alive_nodes() < n:
            if time.time() - t0 > timeout:
                raise TimeoutError(f"the cluster did not reach {n} nodes in {timeout:.0f} s")
            time.sleep(1.0)

    def processes(self, name: str) -> set[int]:
        """Every live process of node ``name`` (its group and the workers it spawned)."""
        return group_and_descendants(self.nodes[name])

    def node_id(self, name: str) -> str:
        """Ray's id of node ``name`` (from its raylet's ``--node_id``)."""
        for pid in self.processes(name):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
            if args and args[0].endswith("raylet"):
                for a in args:
                    if a.startswith("--node_id="):
                        return a.split("=", 1)[1]
        raise LookupError(f"no raylet of node {name} is running")

    def kill_node(self, name: str) -> None:
        """SIGKILL every process of node ``name`` at once, as if its machine died."""
        kill_all(self.processes(name))
        log.info("killed Ray node %s", name)

    def stop(self) -> None:
        """Kill every process any node of this cluster started; remove the temp dir.

        Besides the nodes' process groups and their descendants, this finds orphans (a
        worker whose raylet died) by the cluster's token in their environment.
        """
        marker = f"RAY_AUTH_TOKEN={self.env['RAY_AUTH_TOKEN']}".encode()
        for _ in range(100):  # until none is left (a dying raylet may still start a worker)
            pids = with_environ(marker)
            for pgid in self._all_groups:
                pids |= group_and_descendants(pgid)
            pids = running(pids - {os.getpid()})
            if not pids:
                break
            kill_all(pids)
            t0 = time.monotonic()  # SIGKILL is not instant: wait until each has exited
            while running(pids) and time.monotonic() - t0 < 30:
                time.sleep(0.01)
        self.nodes.clear()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ----------------------------------------------------------------------------- the scenario


class ScenarioError(RuntimeError):
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
