"""The training loop of EvoPose2D: top-down heatmap training with exact resume.

Backend-agnostic Keras 3 (TensorFlow on CPU/CI, JAX on a GPU). Beside the loop:
:mod:`.losses` (the loss, chosen by ``train.loss``), :mod:`.schedules` (LR), :mod:`.devices`
(precision, threads, data parallelism), :mod:`.model` (config -> compiled model),
:mod:`.rundir` (checkpoints, state, logs: the run-folder layout and how a run resumes),
:mod:`.sources` / :mod:`.batches` (the data).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np
from keras import ops

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.signals import StopSignals
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import evaluate, quantize, transfer
from evopose_sdk.training import genotype as gt
from evopose_sdk.training.batches import BatchLoader, KeypointBatches, make_batches
from evopose_sdk.training.devices import (
    device_scope,
    resolve_precision,
    set_cpu_threads,
    setup_devices,
)
from evopose_sdk.training.losses import loss_from_config
from evopose_sdk.training.model import build_model, compile_model, model_geometry
from evopose_sdk.training.rundir import (
    RunDir,
    StepLog,
    append_eval_log,
    load_checkpoint,
    tensorboard_writer,
)
from evopose_sdk.training.schedules import WarmupCosineDecay
from evopose_sdk.training.sources import load_sources, train_sources, val_sources

log = logging.getLogger(__name__)


def _stop_signals() -> StopSignals:
    """SIGINT/SIGTERM during training: finish the current step, checkpoint and return; a
    second SIGINT aborts at once. Installed also where the process started with the signals
    ignored (``keep_ignored=False``), as the trainer's handler always was."""
    return StopSignals(graceful=True, abort_on=(signal.SIGINT,), keep_ignored=False,
                       on_stop=lambda name: log.warning(
                           "%s: stopping after this step with a checkpoint", name))


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
    cfg, run, state = _open_run(cfgmod.load_config(config, overrides), resume)
    t = cfg["train"]
    precision, strategy, n_dev = _set_up_devices(t)
    records = load_sources(train_sources(cfg), cfg["data"]["flip_pairs"],
                           int(cfg["data"]["min_keypoints"]))
    if cfg["data"]["max_people"]:
        records = records.subset(np.arange(min(len(records), int(cfg["data"]["max_people"]))))
    kset = records.keypoint_set
    genotype, input_hw, _ = model_geometry(cfg)
    stride = gt.heatmap_stride(genotype)
    batches = make_batches(cfg, records, input_hw, stride)
    spe = _steps_per_epoch(t, len(batches), len(records), state)
    total_steps = int(t["epochs"]) * spe
    peak = float(t["lr"]) * int(t["batch_size"]) / float(t["lr_reference_batch"])
    schedule = WarmupCosineDecay(peak, total_steps, int(round(float(t["warmup_epochs"]) * spe)),
                                 peak * float(t["min_lr_fraction"]))
    with device_scope(strategy):
        if state is None:
            model = _new_model(cfg, run, kset.num_keypoints, batches, schedule)
            step = 0
        else:
            model, step = _resumed_model(run, state, spe)
    steplog = StepLog(run.log_path, step if state is not None else None)
    info = {"precision": precision, "devices": n_dev, "steps_per_epoch": spe,
            "total_steps": total_steps, "peak_lr": peak, "people": len(records),
            "keypoints": list(kset.names), "flip_pairs": [list(p) for p in kset.flip_pairs],
            "skeleton": [list(p) for p in kset.skeleton], "input_hw": list(input_hw),
            "heatmap_stride": stride, "genotype": genotype,
            "backend": keras.backend.backend()}
    log.info("training %s: %s", cfg["name"], {k: v for k, v in info.items()
                                              if k not in ("keypoints", "skeleton",
                                                           "flip_pairs", "genotype")})
    tb = tensorboard_writer(run.root) if t["tensorboard"] else None
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
    data_cpu_prev = float(state.get("data_cpu_s", 0.0)) if state else 0.0
    info["elapsed_s"] = elapsed0
    info["cpu_s"] = cpu_prev
    info["data_cpu_s"] = data_cpu_prev
    saved_at = step
    ckpt_every = int(t["checkpoint_every_steps"] or 0)
    keep = int(t["keep_checkpoints"])
    log_every = max(int(t["log_every_steps"]), 1)
    stop_reason = None
    if max_steps is not None and step >= max_steps:  # resumed at max_steps: train no more
        stop_reason = f"max_steps={max_steps}"
        last_path = run.root / state["checkpoint"]
    try:
        with _stop_signals() as stop, BatchLoader(
                batches, int(cfg["data"]["workers"]), bool(cfg["data"]["use_multiprocessing"]),
                int(cfg["data"]["prefetch"])) as loader:
            while step < total_steps and not stop_reason:
                epoch, start = divmod(step, spe)
                it = loader.iterate(epoch, start, spe)
                tic = time.time()
                for _, images, hms, weights in it:
                    lr = schedule.value(step)
                    logs = model.train_on_batch(images.astype(np.float32),
                                                HeatmapCodec.pack(hms, weights),
                                                return_dict=True)
                    loss = float(logs["loss"])
                    hm_loss = float(logs.get("heatmap_loss", float("nan")))
                    step += 1
                    toc = time.time()
                    info["elapsed_s"] = elapsed0 + toc - t0
                    info["cpu_s"] = cpu_prev + time.process_time() - c0
                    info["data_cpu_s"] = data_cpu_prev + loader.data_cpu_s
                    row = {"step": step, "epoch": epoch, "loss": f"{loss:.8g}",
                           "heatmap_loss": f"{hm_loss:.8g}", "lr": f"{lr:.6g}",
                           "images_per_s": f"{len(images) / max(toc - tic, 1e-9):.2f}",
                           "elapsed_s": f"{info['elapsed_s']:.1f}",
                           "cpu_s": f"{info['cpu_s']:.1f}",
                           "data_cpu_s": f"{info['data_cpu_s']:.1f}"}
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
                        last_path = run.save(model, make_state(False), keep, kset)
                        saved_at = step
                    if max_steps is not None and step >= max_steps:
                        stop_reason = f"max_steps={max_steps}"
                    elif stop.received:
                        stop_reason = "signal"
                    if stop_reason:
                        break
                it.close()
                if stop_reason:
                    break
                # end of epoch
                steplog.flush()
                last_path = run.save(model, make_state(True), keep, kset)
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
                last_path = run.save(model, make_state(False), keep, kset)
    finally:
        steplog.close()
        if bar is not None:
            bar.close()
    if stop_reason:
        log.info("stopped at step %d (%s); checkpoint %s", step, stop_reason, last_path)
        return last_path
    if quantize.has_fake_quant(model):  # final.keras is the plain network (same weights)
        model = quantize.strip_fake_quant(model)
    final = run.save_final(model, kset)
    log.info("finished %d steps; final model %s", step, final)
    return final


def _open_run(cfg: dict, resume: str) -> tuple[dict, RunDir, dict | None]:
    """(config, run folder, state or None) of a new or resumed run.

    A resumed run keeps its saved config (fields missing there take today's defaults) except
    :data:`config.RUNTIME_FIELDS`, which come from ``cfg``.
    """
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
        saved = _with_defaults(run.read_config(), cfgmod.DEFAULT_CONFIG)
        changed = [k for k in cfgmod.diff_keys(saved, cfg) if k not in cfgmod.RUNTIME_FIELDS]
        if changed:
            log.warning("resuming %s: config changes to %s are ignored (the run keeps its "
                        "model, data recipe and LR schedule)", run.root, changed)
        for key in cfgmod.RUNTIME_FIELDS:
            section, _, name = key.partition(".")
            saved[section][name] = cfg[section][name]
        cfg = saved
    run.root.mkdir(parents=True, exist_ok=True)
    return cfg, run, state


def _with_defaults(saved: dict, defaults: Mapping) -> dict:
    """``saved`` with the keys it lacks (added to the config since the run began) filled in."""
    out = dict(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], value)
    return out


def _set_up_devices(t: Mapping) -> tuple[str, object | None, int]:
    """Threads, dtype policy and distribution of ``train``; (precision, strategy, devices)."""
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
    return precision, strategy, n_dev


def _steps_per_epoch(t: Mapping, n_batches: int, n_people: int, state: dict | None) -> int:
    spe = min(n_batches, int(t["steps_per_epoch"])) if t["steps_per_epoch"] else n_batches
    if spe < 1:
        raise cfgmod.ConfigError(f"{n_people} people make no batch of {t['batch_size']}")
    if state is not None and int(state["steps_per_epoch"]) != spe:
        log.warning("steps per epoch changed from %s to %d; keeping the run's value",
                    state["steps_per_epoch"], spe)
        spe = int(state["steps_per_epoch"])
    return spe


def _new_model(cfg: Mapping, run: RunDir, num_keypoints: int, batches: KeypointBatches,
               schedule: WarmupCosineDecay) -> keras.Model:
    """Build, initialise (``init.from``), wrap for QAT and compile; writes config.json."""
    t = cfg["train"]
    keras.utils.set_random_seed(int(t["seed"]))
    model = build_model(cfg, num_keypoints)
    if cfg["init"]["from"]:
        report = transfer.initialize(model, cfg["init"]["from"])
        atomic_write_text(run.transfer_report_path, json.dumps(report.to_dict(), indent=2))
        log.info("weight transfer from %s:\n%s", cfg["init"]["from"], report.table())
    if cfg["quantize"]["aware"]:
        model = _quantize_aware(model, batches, cfg["quantize"], run.root)
    compile_model(model, schedule, t["jit_compile"], loss_from_config(cfg))
    atomic_write_text(run.config_path, json.dumps(cfg, indent=2))
    return model


def _resumed_model(run: RunDir, state: Mapping, spe: int) -> tuple[keras.Model, int]:
    """The run's current checkpoint (optimizer state included) and its step."""
    model = load_checkpoint(run.root / state["checkpoint"])
    step = int(state["step"])
    iters = int(ops.convert_to_numpy(model.optimizer.iterations))
    if iters != step:
        log.warning("optimizer iterations %d != run step %d", iters, step)
    log.info("resumed %s at step %d (epoch %d)", run.root, step, step // spe)
    return model, step


def _quantize_aware(model: keras.Model, batches: KeypointBatches, q: Mapping,
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


def _evaluate_epoch(model, val, cfg, root: Path, step: int, epoch: int, kset,
                    elapsed: float, cpu: float) -> None:
    t = cfg["train"]
    res = evaluate.evaluate_model(model, val, flip=bool(t["eval_flip"]),
                                  flip_pairs=kset.flip_pairs,
                                  max_images=t["eval_max_images"])
    append_eval_log(root, step, epoch, res.stats, res.groups, elapsed, cpu)
    log.info("epoch %d validation AP %.4f AP50 %.4f", epoch, res.stats["AP"], res.stats["AP50"])
