"""Children trained in parallel on Ray: one child per GPU, or N CPU workers; local or cluster.

``RayExecutor()`` starts a local Ray (``ray.init``) sized to this machine; ``address="auto"``
or ``"host:6379"`` joins a running cluster (``ray start --head`` / ``ray start --address``).
Every child is one Ray task running :func:`evopose_sdk.training.search.runner.train_child`;
the driver alone writes the search state, as each task returns, so a killed driver resumes
like a sequential search.

Failures (tested on a real two-node cluster, ``tests/test_search_ray_cluster.py``):

- a node or worker that dies mid-child: the driver trains that child again elsewhere (up to
  ``max_retries`` times); its record says ``attempts``, ``node_id`` and ``node_ip``. Errors
  the child raises itself are not retried.
- the head that dies, however Ray reports it (the head's GCS stops answering; a task's
  ``NodeDiedError`` for the node this driver runs through, or ``LocalRayletDiedError``; Ray
  calls of the driver that fail): before any child is trained again the driver asks the
  head for its node table (a real round trip, never a bare TCP connect, which a dying
  process still accepts); when this driver's own node is dead, or the head has not answered
  for ``head_timeout_s``, it stops with :class:`SearchClusterError` ("lost the Ray cluster
  ...", the CLI exits 1). Nothing is submitted to a dead node first: Ray ends a driver whose
  local raylet is gone at its next submission, without a word. ``evopose-search resume`` on
  a restarted cluster trains the children that were in flight again and nothing else.

On a cluster the search folder should be on a shared filesystem (NFS) and the data at the
same path on every node, with the same evopose-sdk version installed. Without a shared
folder, the task gets the parent's weights as bytes, trains in a temp folder and sends the
child's ``model.keras`` back."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from evopose_sdk.errors import EvoPoseError

log = logging.getLogger(__name__)

#: Seconds between checks that the cluster's head still answers, while children train; also
#: the longest one check waits for the head's answer.
_POLL_S = 2.0

#: Seconds the cluster's head may stay silent before the search calls the cluster lost.
HEAD_TIMEOUT_S = 15.0

#: Environment of the worker processes (quiet TensorFlow, the driver's Keras backend).
_ENV_KEYS = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
             "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE")


class SearchClusterError(EvoPoseError, RuntimeError):
    """Ray is missing, the cluster cannot be reached or was lost, or a child was lost too
    often; the search's state on disk stays consistent, so it can be resumed."""


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of ``exc``; only its first sentence when that line is long (Ray's
    errors go on with advice on where to look)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > 160 and ". " in line:
        line = line[: line.index(". ") + 1]
    return f"{type(exc).__name__}: {line}"


def resume_hint(search_dir: str | os.PathLike, address: str | None) -> str:
    """How to continue the search in ``search_dir`` (named in every cluster error)."""
    where = f" --address {address}" if address else ""
    return (f"the search's state is on disk: start the cluster again and continue with "
            f"'evopose-search resume {search_dir}{where}'")


def port_answers(address: str, timeout: float = _POLL_S) -> bool:
    """Whether ``host:port`` accepts a TCP connection. Only for a look after the fact: a
    process being killed still accepts connections for a moment."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def ray_available() -> bool:
    """Whether the ``ray`` package can be imported (extra ``[search]``)."""
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("ray") is not None


def _node() -> dict:
    """Where this Ray task runs (recorded with the child)."""
    import ray  # noqa: PLC0415

    return {"node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address()}


def _task(spec: Mapping, parent_bytes: bytes | None) -> tuple[dict, bytes | None]:
    """Ray task body: train one child here; ship weights as bytes when paths are not shared."""
    import logging as _logging  # noqa: PLC0415

    from evopose_sdk.training.search.runner import train_child  # noqa: PLC0415

    _logging.getLogger("evopose_sdk").setLevel(_logging.WARNING)
    child_dir = Path(spec["child_dir"])
    parent_ok = spec["parent_weights"] is None or Path(spec["parent_weights"]).is_file()
    if child_dir.parent.is_dir() and parent_ok:
        return dict(train_child(spec), **_node()), None
    with tempfile.TemporaryDirectory(prefix="evopose-child-") as tmp:
        spec = dict(spec, child_dir=str(Path(tmp) / child_dir.name))
        Path(spec["child_dir"]).mkdir(parents=True)
        if parent_bytes is not None:
            parent = Path(tmp) / "parent.keras"
            parent.write_bytes(parent_bytes)
            spec["parent_weights"] = str(parent)
        result = dict(train_child(spec), **_node())
        return result, (Path(spec["child_dir"]) / result["weights"]).read_bytes()


class RayExecutor:
    """Runs children as Ray tasks.

    Args:
        address: None for a local Ray started here, else a cluster address (``"auto"``).
        workers: without GPUs: children trained at once (default: 1 per 4 CPUs, >= 1, or
            as many as fit when a node has fewer CPUs than that share).
        gpus_per_child: GPUs per child when the cluster has GPUs (default 1).
        cpus_per_child: CPUs reserved per child (default: CPUs / workers, at most the CPUs
            of the largest node; 1 on GPUs).
        max_retries: times a child is trained again when Ray loses it (its worker or node
            died); its own errors are never retried.
        head_timeout_s: seconds the cluster's head may stay unreachable before the search
            stops with :class:`SearchClusterError` (Ray ends a driver after 60 s).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus_per_child: float = 1.0, cpus_per_child: float | None = None,
                 max_retries: int = 3, head_timeout_s: float = HEAD_TIMEOUT_S) -> None:
        if not ray_available():
            raise SearchClusterError("Ray is not installed: pip install 'evopose-sdk[search]' "
                                     "(or run the search sequentially)")
        import ray  # noqa: PLC0415

        env = {k: os.environ[k] for k in _ENV_KEYS if k in os.environ}
        env.setdefault("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.address = address
        self.max_retries = int(max_retries)
        self.head_timeout_s = float(head_timeout_s)
        self._started = False
        self._lost = False
        self._search_dir = "DIR"
        self._unreachable_since: float | None = None
        self._probe: threading.Thread | None = None
        self._probe_answer: dict = {}
        if not ray.is_initialized():
            kwargs = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                      "log_to_driver": False, "logging_level": logging.WARNING}
            if address is None:
                ncpu = os.cpu_count() or 1
                kwargs["num_cpus"] = ncpu
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
                raise SearchClusterError(
                    f"cannot connect to the Ray cluster at {address}: {_first_line(exc)} (a "
                    "cluster with token authentication needs RAY_AUTH_TOKEN here too)") from exc
            self._started = True
        #: Paths are shared with the workers only on a local Ray; on a cluster the parent's
        #: weights travel with the task (and the child's back when the folder is not shared).
        self._local = address is None
        ctx = ray.get_runtime_context()
        try:  # host:port of the head's GCS (None under Ray Client, ray://), for messages
            self._gcs: str | None = ctx.gcs_address
        except Exception:  # noqa: BLE001
            self._gcs = None
        try:  # the node whose raylet this driver submits through (the head, on its machine)
            self._node_id: str | None = ctx.get_node_id()
        except Exception:  # noqa: BLE001
            self._node_id = None
        res = ray.cluster_resources()
        node_cpus = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
        gpus = float(res.get("GPU", 0))
        cpus = float(res.get("CPU", 1))
        if gpus >= 1:
            self.options = {"num_gpus": gpus_per_child,
                            "num_cpus": cpus_per_child if cpus_per_child else 1}
            self.slots = int(gpus // gpus_per_child)
        else:
            n = int(workers) if workers else max(1, int(cpus) // 4)
            per = cpus_per_child if cpus_per_child else max(cpus / n, 0.01)
            biggest = max(node_cpus, default=cpus)
            if per > biggest:  # a child must fit on one node, or Ray never schedules it
                per = biggest
                n = int(workers) if workers else max(1, sum(int(c // per) for c in node_cpus))
            self.options = {"num_cpus": per}
            self.slots = n
        self._remote = ray.remote(max_retries=0)(_task)
        log.info("Ray: %d node(s), %s; %d children at once with %s each", len(node_cpus), res,
                 self.slots, self.options)

    def run(self, specs: Sequence[Mapping], on_result: Callable[[Mapping, dict], None]) -> None:
        """Submit every spec (at most ``slots`` in flight); ``on_result`` in completion order.

        A child whose worker, node or result object is lost (``NodeDiedError``,
        ``WorkerCrashedError``, ``ObjectLostError``...) is submitted again, at most
        ``max_retries`` times, once the head has answered that the cluster still stands; its
        result then says ``attempts``. An error the child raised itself is not retried: it
        propagates, as in a sequential search. When the cluster is lost (see the module's
        docstring), :class:`SearchClusterError` is raised: the search's state is on disk,
        and ``evopose-search resume`` continues it on a restarted cluster.
        """
        import ray  # noqa: PLC0415
        from ray import exceptions as rex  # noqa: PLC0415

        queue: list[tuple[Mapping, int]] = [(spec, 1) for spec in specs]
        running: dict = {}
        if specs:  # children/<id> of the search folder (state.SearchDir), for messages
            self._search_dir = str(Path(specs[0]["child_dir"]).parent.parent)
        try:
            while queue or running:
                try:
                    while queue and len(running) < self.slots:
                        spec, attempt = queue.pop(0)
                        running[self._submit(spec)] = (spec, attempt)
                    done, _ = ray.wait(list(running), num_returns=1, timeout=_POLL_S)
                except (rex.RayError, ConnectionError) as exc:  # the driver's own Ray calls
                    self._raise_if_lost(exc)
                    raise SearchClusterError(
                        f"Ray failed ({_first_line(exc)}); {self._resume_hint()}") from exc
                if not done:
                    self._raise_if_lost(None)
                    continue
                for ref in done:
                    spec, attempt = running.pop(ref)
                    try:
                        result, weights = ray.get(ref)
                    except (rex.RayTaskError, rex.TaskCancelledError):
                        raise
                    except rex.RayError as exc:
                        cid = spec["record"]["id"]
                        self._raise_if_lost(exc)
                        if attempt > self.max_retries:
                            raise SearchClusterError(
                                f"{cid} was lost {attempt} times ({_first_line(exc)}); "
                                f"{self._resume_hint()} when the cluster is healthy") from exc
                        log.warning("%s lost its Ray worker (%s); training it again "
                                    "(attempt %d of %d)", cid, _first_line(exc), attempt + 1,
                                    self.max_retries + 1)
                        queue.insert(0, (spec, attempt + 1))
                        continue
                    if weights is not None:
                        child_dir = Path(spec["child_dir"])
                        child_dir.mkdir(parents=True, exist_ok=True)
                        from evopose_sdk.card import atomic_write_bytes  # noqa: PLC0415

                        atomic_write_bytes(child_dir / result["weights"], weights)
                    on_result(spec, dict(result, attempts=attempt))
        finally:
            if not self._lost:
                for ref in running:
                    ray.cancel(ref, force=True)

    @property
    def gcs_address(self) -> str | None:
        """``host:port`` of the cluster head's GCS (None under Ray Client)."""
        return self._gcs

    def _resume_hint(self) -> str:
        return resume_hint(self._search_dir, self.address)

    def _node_table(self) -> list[dict] | None:
        """The head's node table (``ray.nodes()``), or None when it has not answered within
        ``_POLL_S``. The call runs in a daemon thread, as Ray blocks it while the head is
        gone; a call still waiting is waited on again, never doubled."""
        import ray  # noqa: PLC0415

        if self._probe is None:
            answer: dict = {}

            def ask() -> None:
                try:
                    answer["nodes"] = ray.nodes()
                except Exception as exc:  # noqa: BLE001 - a failed call is no answer
                    answer["error"] = exc

            self._probe_answer = answer
            self._probe = threading.Thread(target=ask, name="ray-head-probe", daemon=True)
            self._probe.start()
        t0 = time.monotonic()
        self._probe.join(_POLL_S)
        if self._probe.is_alive():
            return None
        self._probe = None
        if "nodes" not in self._probe_answer:  # refused at once: the next try in _POLL_S
            time.sleep(max(0.0, _POLL_S - (time.monotonic() - t0)))
        return self._probe_answer.get("nodes")

    def _own_node_died(self, exc: BaseException | None, nodes: list[dict] | None) -> bool:
        """Whether the node this driver submits through is dead: ``exc`` says so
        (``LocalRayletDiedError``, or ``NodeDiedError`` naming it) or the head lists it dead."""
        from ray import exceptions as rex  # noqa: PLC0415

        if isinstance(exc, rex.LocalRayletDiedError):
            return True
        if not self._node_id:
            return False
        if isinstance(exc, rex.NodeDiedError) and self._node_id in str(exc):
            return True
        return any(n.get("NodeID") == self._node_id and not n.get("Alive")
                   for n in nodes or ())

    def _raise_if_lost(self, exc: BaseException | None) -> None:
        """Raise :class:`SearchClusterError` when the cluster is lost.

        ``exc`` None: one check while children train (the head may stay silent for up to
        ``head_timeout_s`` before this raises). ``exc`` given (a lost task, a failed Ray
        call): returns only once the head has answered and this driver's node is alive.
        """
        while True:
            if self._own_node_died(exc, None):
                self._lost_cluster(f"the Ray node this search runs through ({self._node_id}) "
                                   f"died ({_first_line(exc)})", exc)
            nodes = self._node_table()
            if nodes is not None:
                self._unreachable_since = None
                if self._own_node_died(None, nodes):
                    self._lost_cluster(f"the head lists this search's node {self._node_id} "
                                       "as dead", exc)
                return
            now = time.monotonic()
            if self._unreachable_since is None:
                self._unreachable_since = now
                log.warning("the Ray head at %s does not answer", self._gcs or self.address)
            silent = now - self._unreachable_since
            if silent >= self.head_timeout_s:
                self._lost_cluster(f"its head at {self._gcs or self.address} has not answered "
                                   f"for {silent:.0f} s", exc)
            if exc is None:
                return

    def _lost_cluster(self, why: str, exc: BaseException | None) -> None:
        """Mark the cluster lost (nothing more is sent to it) and raise the one-line error."""
        self._lost = True
        where = f"at {self.address}" if self.address else "(a local Ray)"
        raise SearchClusterError(f"lost the Ray cluster {where}: {why}; "
                                 f"{self._resume_hint()}") from exc

    def _submit(self, spec: Mapping):
        """One Ray task for ``spec``; the parent's weights travel as bytes on a cluster."""
        pb = None
        pw = spec.get("parent_weights")
        if pw and not self._local:  # a cluster may not share the folder
            pb = Path(pw).read_bytes()
        return self._remote.options(**self.options).remote(dict(spec), pb)

    def close(self) -> None:
        import ray  # noqa: PLC0415

        if self._started and ray.is_initialized():
            ray.shutdown()
