"""A real multi-node Ray cluster on this machine: ``ray start --head`` and
``ray start --address`` processes, each node in a process group of its own so that a check
can kill one node (like a machine that dies) and tear everything down without ``ray stop``,
which would stop every Ray of this user. :mod:`evopose_sdk.training.search.head_loss` runs
the head-loss scenario on it.

Linux only (reads ``/proc``). Every process a node starts is found by its process group or
as a descendant of one (Ray workers call ``setsid``), and killed with SIGKILL. Only the
loopback address is used (Ray itself names this machine's own address to its processes).
"""

from __future__ import annotations

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
from pathlib import Path

log = logging.getLogger(__name__)

RAY = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


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
