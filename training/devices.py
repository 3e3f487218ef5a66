"""Devices of a training run: mixed precision, CPU threads, data parallelism.

TensorFlow, JAX and torch are imported only to probe the backend that is in use.
"""

from __future__ import annotations

import contextlib
import logging

import keras

from evopose_sdk.training import config as cfgmod

log = logging.getLogger(__name__)


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


def device_scope(strategy) -> contextlib.AbstractContextManager:
    """The scope to build the model in: the strategy's (TensorFlow), else a no-op."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
