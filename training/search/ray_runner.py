"""Children trained in parallel on Ray: one child per GPU, or N CPU workers; local or cluster.

``RayExecutor()`` starts a local Ray (``ray.init``) sized to this machine; ``address="auto"``
or ``"ray://host:10001"`` joins a running cluster. Every child is one Ray task running
:func:`evopose_sdk.training.search.runner.train_child`; the driver alone writes the search
state, as each task returns, so a killed driver resumes like a sequential search.

On a cluster the search folder should be on a shared filesystem (NFS) and the data at the
same path on every node. Without one, the task gets the parent's weights as bytes, trains in
a temp folder and sends the child's ``model.keras`` back.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment of the worker processes (quiet TensorFlow, the driver's Keras backend).
_ENV_KEYS = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS",
             "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE")


def ray_available() -> bool:
    """Whether the ``ray`` package can be imported (extra ``[search]``)."""
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("ray") is not None


def _task(spec: Mapping, parent_bytes: bytes | None) -> tuple[dict, bytes | None]:
    """Ray task body: train one child here; ship weights as bytes when paths are not shared."""
    import logging as _logging  # noqa: PLC0415

    from evopose_sdk.training.search.runner import train_child  # noqa: PLC0415

    _logging.getLogger("evopose_sdk").setLevel(_logging.WARNING)
    child_dir = Path(spec["child_dir"])
    parent_ok = spec["parent_weights"] is None or Path(spec["parent_weights"]).is_file()
    if child_dir.parent.is_dir() and parent_ok:
        return train_child(spec), None
    with tempfile.TemporaryDirectory(prefix="evopose-child-") as tmp:
        spec = dict(spec, child_dir=str(Path(tmp) / child_dir.name))
        Path(spec["child_dir"]).mkdir(parents=True)
        if parent_bytes is not None:
            parent = Path(tmp) / "parent.keras"
            parent.write_bytes(parent_bytes)
            spec["parent_weights"] = str(parent)
        result = train_child(spec)
        return result, (Path(spec["child_dir"]) / result["weights"]).read_bytes()


class RayExecutor:
    """Runs children as Ray tasks.

    Args:
        address: None for a local Ray started here, else a cluster address (``"auto"``).
        workers: local CPU-only Ray: children trained at once (default: 1 per 4 CPUs, >= 1).
        gpus_per_child: GPUs per child when the cluster has GPUs (default 1).
        cpus_per_child: CPUs reserved per child (default: CPUs / workers locally, 1 on GPUs).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus_per_child: float = 1.0, cpus_per_child: float | None = None) -> None:
        if not ray_available():
            raise RuntimeError("Ray is not installed: pip install 'evopose-sdk[search]' (or run "
                               "the search sequentially)")
        import ray  # noqa: PLC0415

        env = {k: os.environ[k] for k in _ENV_KEYS if k in os.environ}
        env.setdefault("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self._started = False
        if not ray.is_initialized():
            kwargs = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                      "log_to_driver": False, "logging_level": logging.WARNING}
            if address is None:
                ncpu = os.cpu_count() or 1
                kwargs["num_cpus"] = ncpu
            ray.init(address=address, **kwargs)
            self._started = True
        res = ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        cpus = float(res.get("CPU", 1))
        if gpus >= 1:
            self.options = {"num_gpus": gpus_per_child,
                            "num_cpus": cpus_per_child if cpus_per_child else 1}
            self.slots = int(gpus // gpus_per_child)
        else:
            n = int(workers) if workers else max(1, int(cpus) // 4)
            per = cpus_per_child if cpus_per_child else max(cpus / n, 0.01)
            self.options = {"num_cpus": per}
            self.slots = n
        self._remote = ray.remote(max_retries=0)(_task)
        log.info("Ray: %s; %d children at once with %s each", res, self.slots, self.options)

    def run(self, specs: Sequence[Mapping], on_result: Callable[[Mapping, dict], None]) -> None:
        """Submit every spec (at most ``slots`` in flight); ``on_result`` in completion order."""
        import ray  # noqa: PLC0415

        queue = list(specs)
        running: dict = {}
        try:
            while queue or running:
                while queue and len(running) < self.slots:
                    spec = queue.pop(0)
                    pb = None
                    pw = spec.get("parent_weights")
                    if pw and not self._started:  # a cluster may not share the folder
                        pb = Path(pw).read_bytes()
                    ref = self._remote.options(**self.options).remote(dict(spec), pb)
                    running[ref] = spec
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    spec = running.pop(ref)
                    result, weights = ray.get(ref)
                    if weights is not None:
                        child_dir = Path(spec["child_dir"])
                        child_dir.mkdir(parents=True, exist_ok=True)
                        from evopose_sdk.atomic import atomic_write_bytes  # noqa: PLC0415

                        atomic_write_bytes(child_dir / result["weights"], weights)
                    on_result(spec, result)
        finally:
            for ref in running:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        import ray  # noqa: PLC0415

        if self._started and ray.is_initialized():
            ray.shutdown()
