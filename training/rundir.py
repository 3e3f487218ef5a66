"""The folder of one training run: checkpoints, state, logs; exact resume.

Run folder (``output.dir``)::

    config.json            resolved config of the run
    state.json             step, epoch and the current checkpoint (written last, atomically)
    checkpoints/step-000000123.keras   model + optimizer (written to a temp file + os.replace)
    checkpoints/step-000000123.rng.npz  dropout seed-generator states (exact resume)
    checkpoints/step-000000123.keypoints.json  the keypoint set (names, flip pairs, skeleton)
    train_log.csv          one row per step: step, epoch, loss, lr, images/s, elapsed
    eval_log.csv           validation AP per evaluation
    transfer_report.json   what the weight transfer initialisation copied
    final.keras            the model at the end of training (+ final.keypoints.json)

A killed run resumes from ``state.json``: step counter, epoch, position in the epoch, LR
schedule (the optimizer's iteration count), optimizer moments and the CSV loss curve continue;
the data order is a function of (seed, epoch) and each sample's augmentation of (seed,
epoch, position), so the resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
from keras import ops

from evopose_sdk.atomic import atomic_temp_path, atomic_write_bytes, atomic_write_text, publish
from evopose_sdk.training.keypoint_sets import KeypointSet, keypoints_path_for, save_beside
from evopose_sdk.training.model import CUSTOM_OBJECTS

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOG_FILE = "train_log.csv"
EVAL_LOG_FILE = "eval_log.csv"
CONFIG_FILE = "config.json"
TRANSFER_REPORT_FILE = "transfer_report.json"
FINAL_FILE = "final.keras"
#: ``elapsed_s``: wall seconds of training (evaluation excluded) since the run began, across
#: resumes; ``cpu_s``: CPU seconds of the training process (all its threads; data workers and
#: evaluation excluded), the measure that stays honest on a shared machine; ``data_cpu_s``:
#: CPU seconds of the data worker processes (empty in logs written before it existed).
LOG_FIELDS = ("step", "epoch", "loss", "heatmap_loss", "lr", "images_per_s", "elapsed_s",
              "cpu_s", "data_cpu_s")


def save_keras_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save`` (weights + optimizer state) to a temp file, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temp_path(path)
    try:
        model.save(tmp)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.root / LOG_FILE

    @property
    def transfer_report_path(self) -> Path:
        return self.root / TRANSFER_REPORT_FILE

    @property
    def final_path(self) -> Path:
        return self.root / FINAL_FILE

    def read_config(self) -> dict:
        """The run's resolved config (``config.json``)."""
        return json.loads(self.config_path.read_text(encoding="utf-8"))

    def read_transfer_report(self) -> dict | None:
        """The weight-transfer report, or None when the run did not start from weights."""
        if not self.transfer_report_path.is_file():
            return None
        return json.loads(self.transfer_report_path.read_text(encoding="utf-8"))

    def read_state(self) -> dict | None:
        if not self.state_path.is_file():
            return None
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"run state {self.state_path} is corrupt: {exc}") from exc

    def save(self, model: keras.Model, state: dict, keep: int = 2,
             keypoints: KeypointSet | None = None) -> Path:
        """Checkpoint + RNG states + keypoint set, then ``state.json`` (the commit point),
        then prune to the ``keep`` newest checkpoints."""
        name = f"step-{int(state['step']):09d}"
        ckpt = save_keras_atomic(model, self.ckpt_dir / f"{name}.keras")
        if keypoints is not None:
            save_beside(keypoints, ckpt)
        buf = io.BytesIO()
        np.savez(buf, **{k.replace("/", "|"): v for k, v in _seed_states(model).items()})
        atomic_write_bytes(self.ckpt_dir / f"{name}.rng.npz", buf.getvalue())
        state = dict(state, checkpoint=str(ckpt.relative_to(self.root)))
        atomic_write_text(self.state_path, json.dumps(state, indent=2))
        if keep > 0:
            ckpts = sorted(self.ckpt_dir.glob("step-*.keras"))
            for old in ckpts[:-keep]:
                old.unlink(missing_ok=True)
                old.with_suffix(".rng.npz").unlink(missing_ok=True)
                keypoints_path_for(old).unlink(missing_ok=True)
        return ckpt

    def save_final(self, model: keras.Model, keypoints: KeypointSet | None = None) -> Path:
        """``final.keras`` (and its keypoint set beside it)."""
        path = save_keras_atomic(model, self.final_path)
        if keypoints is not None:
            save_beside(keypoints, path)
        return path


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
        self._w.writerow([row.get(k, "") for k in LOG_FIELDS])

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
            np.array([float(r.get(column) or "nan") for r in rows]))


def append_eval_log(root: str | os.PathLike, step: int, epoch: int, stats: Mapping[str, float],
                    groups: Mapping[str, Mapping[str, float]], elapsed_s: float,
                    cpu_s: float) -> Path:
    """Append one evaluation row to ``eval_log.csv`` (header on the first row).

    ``stats`` holds AP, AP50, AP75 and AR; ``groups`` maps a group name to its stats (a
    column ``AP<name>`` each, sorted by name).
    """
    path = Path(root) / EVAL_LOG_FILE
    new = not path.is_file()
    cols = [(f"AP{name}", g) for name, g in sorted(groups.items())]
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "epoch", "AP", "AP50", "AP75", "AR", *[n for n, _ in cols],
                        "elapsed_s", "cpu_s"])
        s = stats
        w.writerow([step, epoch, f"{s['AP']:.4f}", f"{s['AP50']:.4f}", f"{s['AP75']:.4f}",
                    f"{s['AR']:.4f}", *[f"{g['AP']:.4f}" for _, g in cols], f"{elapsed_s:.1f}",
                    f"{cpu_s:.1f}"])
    return path


def tensorboard_writer(root: str | os.PathLike):
    """``write(step, loss, lr)`` into ``root/tensorboard``, or None when not available
    (TensorBoard needs the TensorFlow backend and the ``tensorboard`` package)."""
    if keras.backend.backend() != "tensorflow":
        return None
    if importlib.util.find_spec("tensorboard") is None:
        log.info("tensorboard is not installed; logging to CSV only")
        return None
    import tensorflow as tf  # noqa: PLC0415

    writer = tf.summary.create_file_writer(str(Path(root) / "tensorboard"))

    def write(step: int, loss: float, lr: float) -> None:
        with writer.as_default():
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("lr", lr, step=step)
        writer.flush()

    return write
