"""The (mu, lambda) neuroevolution loop of EvoPose2D with resumable on-disk state.

Generation 0 trains the ancestor (EfficientNet-B0 by default) for ``ancestor_epochs``; every
later generation plans ``children`` one-gene mutants of the ``parents`` best of the previous
generation (child j of parent j mod mu), initialises each from its parent's ``model.keras``
by weight transfer (:mod:`evopose_sdk.training.transfer`, through ``init.from`` of
:func:`evopose_sdk.training.train.train`), trains it for ``child_epochs`` with rotation and
scale augmentation off, and validates it on ground-truth boxes without flip. Fitness is
``val_loss * (params / target_params) ** 0.07`` (lower is better).

Children run through an executor: :class:`SequentialExecutor` here, or
:class:`evopose_sdk.training.search.ray_runner.RayExecutor` (one child per GPU or per CPU
worker, local or on a cluster).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.errors import RunInterrupted
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import genotype as gt
from evopose_sdk.training.batches import KeypointBatches
from evopose_sdk.training.search.config import SearchConfig
from evopose_sdk.training.search.mutation import mutate
from evopose_sdk.training.search.state import STATE_VERSION, SearchDir, SearchStateError, child_id
from evopose_sdk.training.sources import load_sources, val_sources

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"
#: Augmentation of every search child: the paper's recipe without rotation and scaling.
SEARCH_AUGMENT = {"rotation": 0.0, "rotation_prob": 0.0, "scale_factor": 0.0}


class SearchInterrupted(RunInterrupted, RuntimeError):
    """Raised by a test hook (or a caller) to stop a search between two children."""


def fitness(val_loss: float, params: int, target_params: float = 5e6,
            exponent: float = 0.07) -> float:
    """The paper's fitness, ``val_loss * (params / target_params) ** exponent`` (lower wins)."""
    if params <= 0 or target_params <= 0:
        raise ValueError(f"params and target_params must be > 0; received {params}, "
                         f"{target_params}")
    return float(val_loss) * (float(params) / float(target_params)) ** float(exponent)


def child_seed(seed: int, generation: int, index: int) -> int:
    """Training seed of a child (a function of the search seed and the child's id)."""
    return int((int(seed) * 1_000_003 + generation * 1009 + index) % (2**31 - 1))


# ----------------------------------------------------------------------------- one child


def child_train_config(cfg: SearchConfig, record: Mapping, run_dir: Path,
                       parent_weights: str | None) -> dict:
    """The resolved training config of one child (a :mod:`training.config` dict)."""
    gen0 = record["generation"] == 0
    overrides = list(cfg.train_overrides) + list(
        cfg.ancestor_overrides if gen0 else cfg.child_overrides)
    tc = cfgmod.load_config(copy.deepcopy(cfg.train_config), overrides)
    tc["name"] = f"search-{record['id']}"
    tc["model"]["size"] = None
    tc["model"]["genotype"] = [list(b) for b in record["genotype"]]
    tc["model"]["input_hw"] = list(cfg.input_hw)
    aug = tc["data"]["augment"]
    if isinstance(aug, dict):
        aug.update(SEARCH_AUGMENT)
    tc["train"]["epochs"] = int(cfg.ancestor_epochs if gen0 else cfg.child_epochs)
    tc["train"]["seed"] = child_seed(cfg.seed, record["generation"], record["index"])
    tc["train"]["eval_every_epochs"] = 0
    tc["train"]["tensorboard"] = False
    tc["train"]["progress"] = False
    tc["train"]["max_steps"] = None
    tc["init"]["from"] = parent_weights if parent_weights else tc["init"]["from"]
    tc["output"]["dir"] = str(run_dir)
    return tc


_VAL_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def validation_arrays(train_cfg: Mapping, input_hw: Sequence[int], stride: int,
                      max_people: int | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation crops on ground-truth boxes, no augmentation, no flip (cached per process).

    Returns:
        images (N, h, w, 3) uint8, heatmaps (N, h/s, w/s, K) float32, weights (N, K) float32.
    """
    specs = val_sources(train_cfg)
    if not specs:
        raise SearchStateError("the training config has no validation data (data.val_root / "
                               "data.root with images of data.val_split)")
    d = train_cfg["data"]
    key = (json.dumps([[s.annotations, s.images, s.split] for s in specs]),
           tuple(int(v) for v in input_hw), int(stride), max_people, d["sigma"])
    if key not in _VAL_CACHE:
        records = load_sources(specs, d["flip_pairs"], int(d["min_keypoints"]))
        if max_people and len(records) > max_people:
            records = records.subset(np.arange(int(max_people)))
        batches = KeypointBatches(records, tuple(input_hw), int(stride), 1, augment=False,
                                  shuffle=False, drop_last=False, sigma=d["sigma"])
        samples = [batches.sample(p) for p in range(len(batches.order))]
        _VAL_CACHE[key] = (np.stack([s["image"] for s in samples]),
                           np.stack([s["heatmaps"] for s in samples]).astype(np.float32),
                           np.stack([s["weights"] for s in samples]).astype(np.float32))
    return _VAL_CACHE[key]


def validation_loss(model, images: np.ndarray, heatmaps: np.ndarray, weights: np.ndarray,
                    batch_size: int = 32, loss=None) -> float:
    """Mean per-person training loss without weight decay (``loss``: a loss of
    :mod:`evopose_sdk.training.losses`, default :class:`~evopose_sdk.training.losses.HeatmapMSE`)
    on (N, h, w, 3) images against (N, h/s, w/s, K) heatmaps and (N, K) weights."""
    from evopose_sdk.training.losses import HeatmapMSE  # noqa: PLC0415  (Keras: children only)

    pred = np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size,
                                    verbose=0), np.float32)
    if pred.shape != heatmaps.shape:
        raise ValueError(f"model heatmaps {pred.shape} do not match targets {heatmaps.shape}")
    loss = loss if loss is not None else HeatmapMSE()
    return float(loss(HeatmapCodec.pack(heatmaps, weights), pred))


def train_child(spec: Mapping) -> dict:
    """Train and evaluate one child; the unit of work of every executor.

    Args:
        spec: ``{"record": child record, "config": SearchConfig dict, "child_dir": path,
            "parent_weights": path or None}``.

    Returns:
        the fields to merge into the child's record: status, weights, params, macs, val_loss,
        fitness, train_seconds, steps, transfer (summary string or None).
    """
    import keras  # noqa: PLC0415

    from evopose_sdk.training.losses import loss_from_config  # noqa: PLC0415
    from evopose_sdk.training.network import count_macs, count_params  # noqa: PLC0415
    from evopose_sdk.training.rundir import RunDir, load_checkpoint  # noqa: PLC0415
    from evopose_sdk.training.train import train  # noqa: PLC0415

    cfg = SearchConfig.from_any(spec["config"])
    record = spec["record"]
    child_dir = Path(spec["child_dir"])
    run = RunDir(child_dir / "run")
    tc = child_train_config(cfg, record, run.root, spec.get("parent_weights"))
    t0 = time.time()
    keras.backend.clear_session()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        tf.config.run_functions_eagerly(bool(cfg.eager))
    final = train(tc, resume="auto")
    seconds = time.time() - t0
    state = run.read_state() or {}
    if not state.get("finished"):  # SIGINT/SIGTERM: train() checkpointed and returned early
        raise SearchInterrupted(f"{record['id']} stopped at step {state.get('step', 0)} of "
                                f"{state.get('total_steps')}; resume the search to finish it")
    model = load_checkpoint(final, compile=False)
    stride = gt.heatmap_stride(record["genotype"])
    images, hms, wts = validation_arrays(tc, cfg.input_hw, stride, cfg.val_max_people)
    loss = validation_loss(model, images, hms, wts, cfg.val_batch_size, loss_from_config(tc))
    params, macs = count_params(model), count_macs(model)
    weights = child_dir / "model.keras"
    shutil.copyfile(final, child_dir / ".model.keras.tmp")
    os.replace(child_dir / ".model.keras.tmp", weights)
    report = run.read_transfer_report()
    transfer = report.get("summary") if report else None
    if not cfg.keep_checkpoints:
        shutil.rmtree(run.ckpt_dir, ignore_errors=True)
    del model
    keras.backend.clear_session()
    return {"status": DONE, "weights": "model.keras", "params": params, "macs": macs,
            "val_loss": loss, "fitness": fitness(loss, params, cfg.target_params,
                                                 cfg.fitness_exponent),
            "train_seconds": round(seconds, 2), "steps": int(state["step"]),
            "transfer": transfer}


# ----------------------------------------------------------------------------- executors


class SequentialExecutor:
    """Trains children one after the other in this process."""

    name = "sequential"

    def run(self, specs: Sequence[Mapping], on_result: Callable[[Mapping, dict], None]) -> None:
        for spec in specs:
            on_result(spec, train_child(spec))

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- the search


class Search:
    """A (mu, lambda) search whose whole state lives in ``root`` (see :mod:`.state`).

    ``Search.create(root, config)`` starts one; ``Search.open(root)`` reopens it (to resume or
    report). ``run(executor)`` trains every generation that is not finished yet.
    """

    def __init__(self, root: str | os.PathLike, state: dict) -> None:
        self.dir = SearchDir(root)
        self.state = state
        self.config = SearchConfig.from_any(state["config"])

    @classmethod
    def create(cls, root: str | os.PathLike, config: SearchConfig | dict | str) -> Search:
        """Start a search in ``root`` (which must not hold one)."""
        d = SearchDir(root)
        if d.exists():
            raise FileExistsError(f"{d.root} already holds a search; resume it with "
                                  f"'evopose-search resume {d.root}'")
        cfg = SearchConfig.from_any(config)
        state = {"version": STATE_VERSION, "status": "running", "config": cfg.to_dict(),
                 "seen": [], "generations": [], "created": time.time()}
        d.root.mkdir(parents=True, exist_ok=True)
        d.write_search(state)
        return cls(d.root, state)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Search:
        d = SearchDir(root)
        if not d.exists():
            raise SearchStateError(f"{d.root} holds no search (no search.json)")
        return cls(d.root, d.read_search())

    # -- planning ----------------------------------------------------------------------

    def _commit(self) -> None:
        self.dir.write_search(self.state)

    def children(self, generation: int | None = None) -> list[dict]:
        gens = self.state["generations"]
        if generation is not None:
            gens = [gens[generation]]
        return [self.dir.read_child(c) for g in gens for c in g["children"]]

    def select(self, generation: int) -> list[str]:
        """Ids of the ``parents`` best finished children (by fitness, then id)."""
        pool = (self.children(generation) if self.config.selection == "comma"
                else [c for g in range(generation + 1) for c in self.children(g)])
        done = [c for c in pool if c["status"] == DONE and np.isfinite(c["fitness"])]
        done.sort(key=lambda c: (c["fitness"], c["id"]))
        return [c["id"] for c in done[: self.config.parents]]

    def plan(self, generation: int) -> dict:
        """Write the pending children of ``generation`` and commit them to search.json."""
        if generation != len(self.state["generations"]):
            raise SearchStateError(f"cannot plan generation {generation}; "
                                   f"{len(self.state['generations'])} are planned")
        cfg = self.config
        seen = list(self.state["seen"])
        space = cfg.mutation_space()
        records = []
        if generation == 0:
            anc = cfg.ancestor_genotype()
            records.append(self._record(0, 0, anc, None, None))
            seen.append(space.signature(anc))
        else:
            prev = self.state["generations"][generation - 1]
            parents = prev.get("selected") or []
            if not parents:
                raise SearchStateError(f"generation {generation - 1} selected no parents")
            rng = np.random.default_rng([int(cfg.seed), int(generation)])
            parent_recs = {p: self.dir.read_child(p) for p in parents}
            for j in range(cfg.children):
                order = parents[j % len(parents):] + parents[: j % len(parents)]
                for pid in order:  # the parent of j; the next one if it has no unseen child
                    try:
                        geno, mut = mutate(parent_recs[pid]["genotype"], space, rng, seen)
                    except RuntimeError as exc:
                        log.warning("%s", exc)
                        continue
                    records.append(self._record(generation, len(records), geno, pid, mut))
                    seen.append(space.signature(geno))
                    break
            if not records:
                raise SearchStateError(f"generation {generation}: the parents have no "
                                       "untrained one-gene mutant left")
        for r in records:
            self.dir.write_child(r)
        gen = {"index": generation, "children": [r["id"] for r in records], "selected": None,
               "finished": False}
        self.state["generations"].append(gen)
        self.state["seen"] = seen
        self._commit()
        log.info("generation %d: planned %d children", generation, len(records))
        return gen

    def _record(self, generation: int, index: int, genotype, parent: str | None,
                mutation: dict | None) -> dict:
        return {"id": child_id(generation, index), "generation": generation, "index": index,
                "genotype": [list(map(int, b)) for b in genotype],
                "genotype_str": gt.encode(genotype), "parent": parent, "mutation": mutation,
                "status": PENDING, "weights": None, "params": None, "macs": None,
                "val_loss": None, "fitness": None}

    # -- running -----------------------------------------------------------------------

    def spec(self, record: Mapping) -> dict:
        """What an executor needs to train ``record`` (plain JSON-able data)."""
        parent = None
        if record["parent"]:
            prec = self.dir.read_child(record["parent"])
            parent = str(self.dir.child_dir(prec["id"]) / prec["weights"])
        return {"record": dict(record), "config": self.config.to_dict(),
                "child_dir": str(self.dir.child_dir(record["id"])), "parent_weights": parent}

    def run(self, executor=None,
            on_child_done: Callable[[dict], None] | None = None) -> dict:
        """Train every unfinished generation; returns the final ``search.json`` state.

        ``on_child_done(record)`` is called after each child's record is committed (a test
        hook: raising :class:`SearchInterrupted` there stops the search like a crash).
        """
        executor = executor or SequentialExecutor()
        total = self.config.generations + 1
        for g in range(total):
            if g >= len(self.state["generations"]):
                self.plan(g)
            gen = self.state["generations"][g]
            if gen["finished"]:
                continue
            todo = [c for c in self.children(g) if c["status"] != DONE]
            if todo:
                log.info("generation %d: training %d of %d children with %s", g, len(todo),
                         len(gen["children"]), executor.name)

            def on_result(spec: Mapping, result: dict) -> None:
                rec = dict(spec["record"], **result)
                rec["finished_at"] = time.time()
                self.dir.write_child(rec)
                log.info("%s %s params %d loss %.6g fitness %.6g (%.0f s)", rec["id"],
                         rec["genotype_str"], rec["params"], rec["val_loss"], rec["fitness"],
                         rec["train_seconds"])
                if on_child_done is not None:
                    on_child_done(rec)

            executor.run([self.spec(c) for c in todo], on_result)
            gen["selected"] = self.select(g)
            gen["finished"] = True
            self._commit()
            log.info("generation %d: parents %s", g, gen["selected"])
        best = self.best(1)
        self.state["status"] = "finished"
        self.state["best"] = best[0]["id"] if best else None
        self._commit()
        return self.state

    def best(self, n: int = 10) -> list[dict]:
        """The ``n`` finished children of lowest fitness."""
        done = [c for c in self.children() if c["status"] == DONE]
        return sorted(done, key=lambda c: (c["fitness"], c["id"]))[:n]


def run_search(root: str | os.PathLike, config: SearchConfig | dict | str | None = None,
               executor=None, resume: bool = False,
               on_child_done: Callable[[dict], None] | None = None) -> Search:
    """Start (``config`` given) or resume (``resume=True``) the search in ``root`` and run it."""
    if resume:
        search = Search.open(root)
    else:
        if config is None:
            raise ValueError("a new search needs a config")
        search = Search.create(root, config)
    search.run(executor, on_child_done)
    return search
