"""Top-down heatmap training of EvoPose2D: loss, LR schedule, checkpoints, exact resume.

Backend-agnostic Keras 3 (TensorFlow on CPU/CI, JAX on a GPU). TensorFlow is imported only
when it is the backend (TensorBoard, MirroredStrategy).

Run folder (``output.dir``)::

    config.json            resolved config of the run
    state.json             step, epoch and the current checkpoint (written last, atomically)
    checkpoints/step-000000123.keras   model + optimizer (written to a temp file + os.replace)
    checkpoints/step-000000123.rng.npz  dropout seed-generator states (exact resume)
    train_log.csv          one row per step: step, epoch, loss, lr, images/s, elapsed
    eval_log.csv           validation AP per evaluation
    transfer_report.json   what the weight transfer initialisation copied
    final.keras            the model at the end of training

A killed run resumes from ``state.json``: step counter, epoch, position in the epoch, LR
schedule (the optimizer's iteration count), optimizer moments and the CSV loss curve continue;
the data order is a function of (seed, epoch) and each sample's augmentation of (seed,
epoch, position), so the resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
from keras import ops

from evopose_sdk.card import atomic_write_text
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import data as datamod
from evopose_sdk.training import quantize

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "train_log.csv"
#: ``elapsed_s``: wall seconds of training (evaluation excluded) since the run began, across
#: resumes; ``cpu_s``: CPU seconds of the training process (all its threads; data workers and
#: evaluation excluded), the measure that stays honest on a shared machine.
LOG_FIELDS = ("step", "epoch", "loss", "heatmap_loss", "lr", "images_per_s", "elapsed_s",
              "cpu_s")


# ----------------------------------------------------------------------------- loss / LR


@keras.saving.register_keras_serializable(package="evopose")
class HeatmapMSE(keras.losses.Loss):
    """Mean squared heatmap error with per-joint target weights.

    ``y_true`` is (N, H, W, 2K): target heatmaps then per-joint weights broadcast over H, W
    (see :func:`evopose_sdk.training.data.pack_targets`); ``y_pred`` is (N, H, W, K). The
    per-sample loss is ``mean_{h,w,k} w_k (pred - target)^2`` in float32.
    """

    def __init__(self, name: str = "heatmap_mse", reduction: str = "sum_over_batch_size",
                 **kwargs) -> None:
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        k = y_pred.shape[-1]
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        target, weight = y_true[..., :k], y_true[..., k:]
        return ops.mean(weight * ops.square(y_pred - target), axis=(1, 2, 3))

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="evopose")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    ``lr(step) = peak * (step + 1) / warmup`` for ``step < warmup``, else
    ``min + (peak - min) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup) / (total -
    warmup)`` clipped to [0, 1]. ``step`` is the optimizer's iteration count (0-based).
    """

    def __init__(self, peak_lr: float, total_steps: int, warmup_steps: int = 0,
                 min_lr: float = 0.0) -> None:
        if peak_lr <= 0 or total_steps < 1 or warmup_steps < 0 or min_lr < 0:
            raise ValueError(
                f"invalid schedule: peak_lr={peak_lr}, total_steps={total_steps}, "
                f"warmup_steps={warmup_steps}, min_lr={min_lr}")
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        warm_lr = self.peak_lr * (step + 1.0) / float(warm)
        span = float(max(self.total_steps - self.warmup_steps, 1))
        t = ops.clip((step - float(self.warmup_steps)) / span, 0.0, 1.0)
        cos_lr = self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1.0 + ops.cos(math.pi * t))
        return ops.where(step < float(self.warmup_steps), warm_lr, cos_lr)

    def value(self, step: int) -> float:
        """The LR at ``step`` as a Python float (for logs)."""
        return float(ops.convert_to_numpy(self(step)))

    def get_config(self) -> dict:
        return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr": self.min_lr}




# ----------------------------------------------------------------------------- devices


def resolve_precision(precision: str) -> str:
    """``auto`` -> mixed_bfloat16 on GPUs with bf16 (compute capability >= 8), mixed_float16 on
    older GPUs, float32 on CPU."""
    allowed = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
    if precision not in allowed:
        raise cfgmod.ConfigError(f"train.precision must be one of {allowed}; received {precision!r}")
    if precision != "auto":
        return precision
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax  # noqa: PLC0415

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if not gpus:
                return "float32"
            cc = getattr(gpus[0], "compute_capability", "8.0")
            return "mixed_bfloat16" if float(cc) >= 8.0 else "mixed_float16"
        if backend == "tensorflow":
            import tensorflow as tf  # noqa: PLC0415

            gpus = tf.config.list_physical_devices("GPU")
            if not gpus:
                return "float32"
            cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability",
                                                                          (8, 0))
            return "mixed_bfloat16" if cc[0] >= 8 else "mixed_float16"
        if backend == "torch":
            import torch  # noqa: PLC0415

            if not torch.cuda.is_available():
                return "float32"
            return "mixed_bfloat16" if torch.cuda.is_bf16_supported() else "mixed_float16"
    except Exception as exc:  # noqa: BLE001 - any probe failure means: stay in float32
        log.warning("could not probe the accelerator (%s); training in float32", exc)
    return "float32"


def set_cpu_threads(threads: int | None) -> None:
    """Limit TensorFlow's intra-op CPU threads to ``threads`` (None/0: leave the default).

    On a small CPU, two single-threaded jobs do more work together than one job on two
    threads (measured here: 23 img/s on 1 thread vs 36 on 2 for S at 128x96). Only the
    TensorFlow backend; once TensorFlow has started the setting can no longer change, which
    is logged and otherwise ignored.
    """
    if not threads or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf  # noqa: PLC0415

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != int(threads):
            log.warning("TensorFlow already runs with %s intra-op threads; train.threads=%s "
                        "applies from a fresh process", current or "default", threads)


def setup_devices(devices) -> object | None:
    """Data parallelism over local accelerators with the backend's own distribution.

    ``devices`` is 1 (no-op), an int n, or ``"all"``. JAX: ``keras.distribution.DataParallel``
    (set globally; returns None). TensorFlow: returns a ``tf.distribute.MirroredStrategy``
    whose scope the model must be built in. Only 1 device could be tested here.
    """
    if devices in (None, 1, "1"):
        return None
    backend = keras.backend.backend()
    all_devs = keras.distribution.list_devices() if backend == "jax" else None
    if backend == "jax":
        n = len(all_devs) if devices == "all" else int(devices)
        if n > len(all_devs):
            raise cfgmod.ConfigError(f"train.devices={devices} but only {len(all_devs)} found")
        if n <= 1:
            return None
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=all_devs[:n]))
        log.info("data parallel over %d JAX devices", n)
        return None
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        gpus = [f"/gpu:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
        n = len(gpus) if devices == "all" else int(devices)
        if n > len(gpus):
            raise cfgmod.ConfigError(f"train.devices={devices} but only {len(gpus)} GPUs found")
        if n <= 1:
            return None
        log.info("MirroredStrategy over %s", gpus[:n])
        return tf.distribute.MirroredStrategy(gpus[:n])
    raise cfgmod.ConfigError(f"train.devices > 1 is not supported on the {backend} backend")


# ----------------------------------------------------------------------------- model


def model_geometry(cfg: Mapping) -> tuple[list, tuple[int, int], str]:
    """(genotype, input_hw, name) of the config's model section."""
    from evopose_sdk.training.network import get_spec  # noqa: PLC0415

    m = cfg["model"]
    spec = get_spec(m["size"]) if m.get("size") else None
    genotype = m.get("genotype") or (spec.genotype if spec else None)
    input_hw = m.get("input_hw") or (spec.input_hw if spec else None)
    if genotype is None or input_hw is None:
        raise cfgmod.ConfigError("model needs a size (XS/S/M/L) or a genotype and input_hw")
    return [list(b) for b in genotype], (int(input_hw[0]), int(input_hw[1])), str(cfg["name"])


def build_model(cfg: Mapping, num_keypoints: int) -> keras.Model:
    """Build the config's network (with its L2 weight decay) in the current dtype policy."""
    from evopose_sdk.training.network import build_evopose  # noqa: PLC0415

    genotype, input_hw, name = model_geometry(cfg)
    m = cfg["model"]
    return build_evopose(genotype, input_hw, num_keypoints, head_channels=m["head_channels"],
                         activation=m["activation"], drop_connect_rate=m["drop_connect_rate"],
                         weight_decay=float(m["weight_decay"] or 0.0),
                         compound_scaling=bool(m.get("compound_scaling", True)),
                         name=name.replace("-", "_"))


def compile_model(model: keras.Model, schedule: WarmupCosineDecay, jit_compile="auto") -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule), loss=HeatmapMSE(),
                  metrics=[heatmap_loss_metric()], jit_compile=jit_compile)


def heatmap_loss_metric() -> keras.metrics.Metric:
    """The heatmap term of the loss alone (``loss`` also holds the L2 weight decay)."""
    return keras.metrics.MeanMetricWrapper(heatmap_mse, name="heatmap_loss")


@keras.saving.register_keras_serializable(package="evopose")
def heatmap_mse(y_true, y_pred):
    """Per-sample weighted heatmap MSE (the function behind :class:`HeatmapMSE`)."""
    return HeatmapMSE().call(y_true, y_pred)


CUSTOM_OBJECTS = {"HeatmapMSE": HeatmapMSE, "WarmupCosineDecay": WarmupCosineDecay,
                  "heatmap_mse": heatmap_mse, "FakeQuant": quantize.FakeQuant}


def heatmap_stride_of(model: keras.Model) -> int:
    """Input height / heatmap height of a built model."""
    return int(model.input_shape[1]) // int(model.output_shape[1])


# ----------------------------------------------------------------------------- checkpoints


def save_keras_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save`` (weights + optimizer state) to a temp file, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _seed_states(model: keras.Model) -> dict[str, np.ndarray]:
    out = {}
    for layer in model._flatten_layers():  # noqa: SLF001 - SeedGenerators are not in .keras
        for i, sg in enumerate(getattr(layer, "_seed_generators", [])):
            out[f"{layer.name}/{i}"] = ops.convert_to_numpy(sg.state.value)
    return out


def _restore_seed_states(model: keras.Model, states: Mapping[str, np.ndarray]) -> None:
    for layer in model._flatten_layers():  # noqa: SLF001
        for i, sg in enumerate(getattr(layer, "_seed_generators", [])):
            key = f"{layer.name}/{i}"
            if key in states:
                sg.state.assign(states[key])


def load_checkpoint(path: str | os.PathLike, compile: bool = True) -> keras.Model:  # noqa: A002
    """Load a training checkpoint (.keras with optimizer state) and its RNG states."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    model = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile)
    rng = path.with_suffix(".rng.npz")
    if rng.is_file():
        with np.load(rng) as z:
            _restore_seed_states(model, {k.replace("|", "/"): z[k] for k in z.files})
    return model


class RunDir:
    """The files of one training run (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.ckpt_dir = self.root / "checkpoints"

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def read_state(self) -> dict | None:
        if not self.state_path.is_file():
            return None
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"run state {self.state_path} is corrupt: {exc}") from exc

    def save(self, model: keras.Model, state: dict, keep: int = 2) -> Path:
        """Checkpoint + RNG states, then ``state.json`` (the commit point), then prune."""
        name = f"step-{int(state['step']):09d}"
        ckpt = save_keras_atomic(model, self.ckpt_dir / f"{name}.keras")
        seeds = _seed_states(model)
        rng_path = self.ckpt_dir / f"{name}.rng.npz"
        tmp = self.ckpt_dir / f".{name}.rng.tmp{os.getpid()}.npz"
        np.savez(tmp, **{k.replace("/", "|"): v for k, v in seeds.items()})
        os.replace(tmp, rng_path)
        state = dict(state, checkpoint=str(ckpt.relative_to(self.root)))
        atomic_write_text(self.state_path, json.dumps(state, indent=2))
        if keep > 0:
            ckpts = sorted(self.ckpt_dir.glob("step-*.keras"))
            for old in ckpts[:-keep]:
                old.unlink(missing_ok=True)
                old.with_suffix(".rng.npz").unlink(missing_ok=True)
        return ckpt


class StepLog:
    """Per-step CSV loss curve that continues across resumes."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        rows = []
        if resume_step is not None and path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        tmp_text = ",".join(LOG_FIELDS) + "\n" + "".join(
            ",".join(str(r.get(k) or "") for k in LOG_FIELDS) + "\n" for r in rows)
        atomic_write_text(path, tmp_text)
        self._f = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._w = csv.writer(self._f)

    def write(self, row: Mapping) -> None:
        self._w.writerow([row[k] for k in LOG_FIELDS])

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_loss_curve(run_dir: str | os.PathLike, column: str = "loss",
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values of ``column``) of a run's ``train_log.csv``."""
    with open(Path(run_dir) / LOG_FILE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return (np.array([int(r["step"]) for r in rows]),
            np.array([float(r[column]) for r in rows]))


# ----------------------------------------------------------------------------- data


def train_sources(cfg: Mapping) -> list[datamod.SourceSpec]:
    """The training sources of a config (``data.sources`` or every source of ``data.root``)."""
    d = cfg["data"]
    srcs = d.get("sources")
    if srcs is None:
        if not d.get("root"):
            raise cfgmod.ConfigError("set data.root (a folder of sources) or data.sources")
        return datamod.sources_in_root(d["root"], d["split"])
    out = []
    for s in srcs:
        if isinstance(s, str) and d.get("root") and not Path(s).is_dir():
            spec = datamod.sources_in_root(d["root"], d["split"], [s])[0]
        else:
            spec = datamod.SourceSpec.from_any(s)
            if isinstance(s, str):
                spec.split = d["split"]
        out.append(spec)
    return out


def val_sources(cfg: Mapping) -> list[datamod.SourceSpec]:
    """Validation sources: ``data.val_sources`` or sources of val_root/root with val_split."""
    d = cfg["data"]
    if d.get("val_sources"):
        specs = []
        for s in d["val_sources"]:
            if isinstance(s, str) and d.get("root") and not Path(s).is_dir():
                specs.append(datamod.sources_in_root(d.get("val_root") or d["root"],
                                                     d["val_split"], [s])[0])
                continue
            spec = datamod.SourceSpec.from_any(s)
            if not (isinstance(s, Mapping) and "split" in s):
                spec.split = d["val_split"]
            specs.append(spec)
        return specs
    root = d.get("val_root") or d.get("root")
    if not root:
        return []
    specs = datamod.sources_in_root(root, d["val_split"])
    keep = []
    for s in specs:
        coco = datamod.filter_coco_split(datamod.read_coco_json(s.annotations), s.split)
        if coco["annotations"]:
            keep.append(s)
    return keep


def make_batches(cfg: Mapping, records: datamod.PersonRecords, input_hw, stride: int,
                 epoch: int = 0) -> datamod.KeypointBatches:
    t = cfg["train"]
    return datamod.KeypointBatches(records, input_hw, stride, int(t["batch_size"]),
                                   augment=cfg["data"]["augment"], seed=int(t["seed"]),
                                   epoch=epoch, sigma=cfg["data"]["sigma"])


# ----------------------------------------------------------------------------- the loop


class _StopFlag:
    """SIGINT/SIGTERM -> finish the current step, checkpoint, return (a 2nd SIGINT aborts)."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self):
        import signal  # noqa: PLC0415
        import threading  # noqa: PLC0415

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == 2:
            raise KeyboardInterrupt
        log.warning("signal %d: stopping after this step with a checkpoint", signum)
        self.requested = True

    def __exit__(self, *exc):
        import signal  # noqa: PLC0415

        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _progress(cfg: Mapping, total: int, initial: int):
    mode = cfg["train"]["progress"]
    enabled = sys.stderr.isatty() if mode == "auto" else bool(mode)
    if not enabled:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)


def train(config: Mapping | str | os.PathLike, overrides=(), resume: str = "auto") -> Path:
    """Train (or resume) a run; returns the path of the last model written.

    Args:
        config: a config dict, a JSON path or a bundled name (``"s"``); see
            :mod:`evopose_sdk.training.config`.
        overrides: ``"section.key=value"`` strings applied on top.
        resume: ``"auto"`` (continue when ``output.dir`` holds a run), ``"never"`` (fail if
            it does) or ``"must"`` (fail if it does not).

    Returns:
        ``output.dir/final.keras`` after the last epoch, or the checkpoint written when the
        run stopped early (``train.max_steps`` or a signal).
    """
    cfg = cfgmod.load_config(config, overrides)
    if resume not in ("auto", "never", "must"):
        raise ValueError(f"resume must be auto, never or must; received {resume!r}")
    run = RunDir(cfg["output"]["dir"])
    state = run.read_state()
    if state is not None and resume == "never":
        raise FileExistsError(f"{run.root} already holds a run (state.json); resume it or "
                              "choose another output.dir")
    if state is None and resume == "must":
        raise FileNotFoundError(f"no run to resume in {run.root}")
    if state is not None:
        saved = json.loads((run.root / "config.json").read_text(encoding="utf-8"))
        changed = [k for k in cfgmod.diff_keys(saved, cfg) if k not in cfgmod.RUNTIME_FIELDS]
        if changed:
            log.warning("resuming %s: config changes to %s are ignored (the run keeps its "
                        "model, data recipe and LR schedule)", run.root, changed)
        for key in cfgmod.RUNTIME_FIELDS:
            section, _, name = key.partition(".")
            saved[section][name] = cfg[section][name]
        cfg = saved
    run.root.mkdir(parents=True, exist_ok=True)
    t = cfg["train"]

    set_cpu_threads(t.get("threads"))
    precision = resolve_precision(t["precision"])
    keras.config.set_dtype_policy(precision)
    strategy = setup_devices(t["devices"])
    n_dev = 1 if t["devices"] in (None, 1, "1") else (
        strategy.num_replicas_in_sync if strategy is not None
        else len(keras.distribution.list_devices()) if t["devices"] == "all" else int(t["devices"]))
    if int(t["batch_size"]) % max(n_dev, 1):
        raise cfgmod.ConfigError(f"batch_size {t['batch_size']} is not divisible by {n_dev} "
                                 "devices")

    records = datamod.load_sources(train_sources(cfg), cfg["data"]["flip_pairs"],
                                   int(cfg["data"]["min_keypoints"]))
    if cfg["data"]["max_people"]:
        records = records.subset(np.arange(min(len(records), int(cfg["data"]["max_people"]))))
    kset = records.keypoint_set
    genotype, input_hw, _ = model_geometry(cfg)
    from evopose_sdk.training import genotype as gt  # noqa: PLC0415

    stride = gt.heatmap_stride(genotype)
    batches = make_batches(cfg, records, input_hw, stride)
    spe = len(batches)
    if t["steps_per_epoch"]:
        spe = min(spe, int(t["steps_per_epoch"]))
    if spe < 1:
        raise cfgmod.ConfigError(f"{len(records)} people make no batch of {t['batch_size']}")
    if state is not None and int(state["steps_per_epoch"]) != spe:
        log.warning("steps per epoch changed from %s to %d; keeping the run's value",
                    state["steps_per_epoch"], spe)
        spe = int(state["steps_per_epoch"])
    total_steps = int(t["epochs"]) * spe
    peak = float(t["lr"]) * int(t["batch_size"]) / float(t["lr_reference_batch"])
    schedule = WarmupCosineDecay(peak, total_steps, int(round(float(t["warmup_epochs"]) * spe)),
                                 peak * float(t["min_lr_fraction"]))

    scope = strategy.scope() if strategy is not None else _null_scope()
    with scope:
        if state is None:
            keras.utils.set_random_seed(int(t["seed"]))
            model = build_model(cfg, kset.num_keypoints)
            if cfg["init"]["from"]:
                from evopose_sdk.training import transfer  # noqa: PLC0415

                report = transfer.initialize(model, cfg["init"]["from"])
                atomic_write_text(run.root / "transfer_report.json",
                                  json.dumps(report.to_dict(), indent=2))
                log.info("weight transfer from %s:\n%s", cfg["init"]["from"], report.table())
            if cfg["quantize"]["aware"]:
                model = _quantize_aware(model, batches, cfg["quantize"], run.root)
            compile_model(model, schedule, t["jit_compile"])
            step = 0
            atomic_write_text(run.root / "config.json", json.dumps(cfg, indent=2))
        else:
            model = load_checkpoint(run.root / state["checkpoint"])
            step = int(state["step"])
            iters = int(ops.convert_to_numpy(model.optimizer.iterations))
            if iters != step:
                log.warning("optimizer iterations %d != run step %d", iters, step)
            log.info("resumed %s at step %d (epoch %d)", run.root, step, step // spe)
    steplog = StepLog(run.root / LOG_FILE, step if state is not None else None)
    info = {"precision": precision, "devices": n_dev, "steps_per_epoch": spe,
            "total_steps": total_steps, "peak_lr": peak, "people": len(records),
            "keypoints": list(kset.names), "flip_pairs": [list(p) for p in kset.flip_pairs],
            "skeleton": [list(p) for p in kset.skeleton], "input_hw": list(input_hw),
            "heatmap_stride": stride, "genotype": genotype,
            "backend": keras.backend.backend()}
    log.info("training %s: %s", cfg["name"], {k: v for k, v in info.items()
                                              if k not in ("keypoints", "skeleton",
                                                           "flip_pairs", "genotype")})
    tb = _tensorboard(run.root, t) if t["tensorboard"] else None
    val = val_sources(cfg) if int(t["eval_every_epochs"] or 0) > 0 else []

    def make_state(epoch_done: bool) -> dict:
        return {"step": step, "epoch": step // spe, "batch_in_epoch": step % spe,
                "steps_per_epoch": spe, "total_steps": total_steps, "finished": epoch_done
                and step >= total_steps, "time": time.time(), **info}

    last_path: Path | None = None
    max_steps = int(t["max_steps"]) if t["max_steps"] else None
    bar = _progress(cfg, min(total_steps, max_steps or total_steps), step)
    t0 = time.time()
    c0 = time.process_time()
    elapsed0 = float(state.get("elapsed_s", 0.0)) if state else 0.0
    cpu_prev = float(state.get("cpu_s", 0.0)) if state else 0.0
    info["elapsed_s"] = elapsed0
    info["cpu_s"] = cpu_prev
    saved_at = step
    ckpt_every = int(t["checkpoint_every_steps"] or 0)
    keep = int(t["keep_checkpoints"])
    log_every = max(int(t["log_every_steps"]), 1)
    stop_reason = None
    if max_steps is not None and step >= max_steps:  # resumed at max_steps: train no more
        stop_reason = f"max_steps={max_steps}"
        last_path = run.root / state["checkpoint"]
    try:
        with _StopFlag() as stop, datamod.BatchLoader(
                batches, int(cfg["data"]["workers"]), bool(cfg["data"]["use_multiprocessing"]),
                int(cfg["data"]["prefetch"])) as loader:
            while step < total_steps and not stop_reason:
                epoch, start = divmod(step, spe)
                it = loader.iterate(epoch, start, spe)
                tic = time.time()
                for _, images, hms, weights in it:
                    lr = schedule.value(step)
                    logs = model.train_on_batch(images.astype(np.float32),
                                                datamod.pack_targets(hms, weights),
                                                return_dict=True)
                    loss = float(logs["loss"])
                    hm_loss = float(logs.get("heatmap_loss", float("nan")))
                    step += 1
                    toc = time.time()
                    info["elapsed_s"] = elapsed0 + toc - t0
                    info["cpu_s"] = cpu_prev + time.process_time() - c0
                    row = {"step": step, "epoch": epoch, "loss": f"{loss:.8g}",
                           "heatmap_loss": f"{hm_loss:.8g}", "lr": f"{lr:.6g}",
                           "images_per_s": f"{len(images) / max(toc - tic, 1e-9):.2f}",
                           "elapsed_s": f"{info['elapsed_s']:.1f}",
                           "cpu_s": f"{info['cpu_s']:.1f}"}
                    tic = toc
                    steplog.write(row)
                    if not math.isfinite(loss):
                        raise FloatingPointError(f"loss became {loss} at step {step}")
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(epoch=epoch, loss=f"{loss:.3g}", hm=f"{hm_loss:.3g}",
                                        lr=f"{lr:.2g}")
                    if step % log_every == 0:
                        steplog.flush()
                        log.info("step %d/%d epoch %d loss %.5g heatmap %.5g lr %.3g %s img/s",
                                 step, total_steps, epoch, loss, hm_loss, lr,
                                 row["images_per_s"])
                        if tb is not None:
                            tb(step, loss, lr)
                    if ckpt_every and step % ckpt_every == 0 and step % spe:
                        steplog.flush()
                        last_path = run.save(model, make_state(False), keep)
                        saved_at = step
                    if max_steps is not None and step >= max_steps:
                        stop_reason = f"max_steps={max_steps}"
                    elif stop.requested:
                        stop_reason = "signal"
                    if stop_reason:
                        break
                it.close()
                if stop_reason:
                    break
                # end of epoch
                steplog.flush()
                last_path = run.save(model, make_state(True), keep)
                saved_at = step
                ep = step // spe
                if val and ep % int(t["eval_every_epochs"]) == 0:
                    t_eval, c_eval = time.time(), time.process_time()
                    _evaluate_epoch(model, val, cfg, run.root, step, ep, kset, info["elapsed_s"],
                                    info["cpu_s"])
                    t0 += time.time() - t_eval  # the clocks count training, not evaluation
                    c0 += time.process_time() - c_eval
            if step != saved_at:
                steplog.flush()
                last_path = run.save(model, make_state(False), keep)
    finally:
        steplog.close()
        if bar is not None:
            bar.close()
    if stop_reason:
        log.info("stopped at step %d (%s); checkpoint %s", step, stop_reason, last_path)
        return last_path
    if quantize.has_fake_quant(model):  # final.keras is the plain network (same weights)
        model = quantize.strip_fake_quant(model)
    final = save_keras_atomic(model, run.root / "final.keras")
    log.info("finished %d steps; final model %s", step, final)
    return final


def _quantize_aware(model: keras.Model, batches: datamod.KeypointBatches, q: Mapping,
                    root: Path) -> keras.Model:
    """Wrap ``model`` for quantisation-aware training, with int8 ranges set on real crops."""
    n = min(max(int(q["calib_batches"]), 1), len(batches))
    images = np.concatenate([batches.batch(i)[0] for i in range(n)]).astype(np.float32)
    ranges = quantize.activation_ranges(model, images)
    atomic_write_text(root / "fake_quant_ranges.json",
                      json.dumps({k: list(v) for k, v in ranges.items()}, indent=1))
    log.info("quantisation-aware training: %d int8 activation ranges from %d crops",
             len(ranges), len(images))
    return quantize.quantize_aware(model, ranges, bool(q["freeze_batch_norm"]))


class _null_scope:  # noqa: N801
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _tensorboard(root: Path, t: Mapping):
    if keras.backend.backend() != "tensorflow":
        return None
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("tensorboard") is None:
        log.info("tensorboard is not installed; logging to CSV only")
        return None
    import tensorflow as tf  # noqa: PLC0415

    writer = tf.summary.create_file_writer(str(root / "tensorboard"))

    def write(step: int, loss: float, lr: float) -> None:
        with writer.as_default():
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("lr", lr, step=step)
        writer.flush()

    return write


def _evaluate_epoch(model, val, cfg, root: Path, step: int, epoch: int, kset,
                    elapsed: float, cpu: float) -> None:
    from evopose_sdk.training import evaluate  # noqa: PLC0415

    t = cfg["train"]
    res = evaluate.evaluate_model(model, val, flip=bool(t["eval_flip"]),
                                  flip_pairs=kset.flip_pairs,
                                  max_images=t["eval_max_images"])
    path = root / "eval_log.csv"
    new = not path.is_file()
    groups = [(f"AP{name}", g) for name, g in sorted(res.groups.items())]
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "epoch", "AP", "AP50", "AP75", "AR", *[n for n, _ in groups],
                        "elapsed_s", "cpu_s"])
        s = res.stats
        w.writerow([step, epoch, f"{s['AP']:.4f}", f"{s['AP50']:.4f}", f"{s['AP75']:.4f}",
                    f"{s['AR']:.4f}", *[f"{g['AP']:.4f}" for _, g in groups], f"{elapsed:.1f}",
                    f"{cpu:.1f}"])
    log.info("epoch %d validation AP %.4f AP50 %.4f", epoch, res.stats["AP"], res.stats["AP50"])
