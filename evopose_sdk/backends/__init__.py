"""Inference backends: one small class per runtime, same call.

``backend.run(batch)`` takes (N, H, W, 3) float32 RGB 0-255 crops and returns NHWC float32
heatmaps (N, Hh, Ww, K). Preprocessing (normalisation) is inside the model graph; the int8
TFLite path quantises the input with the file's own parameters, as a phone app would.

Where each part lives (import everything from this package): :mod:`.base` the
:class:`Backend` protocol and the checks every backend shares; :mod:`.onnx_runtime` the
devices and :class:`OnnxBackend`; :mod:`.tflite` :class:`TFLiteBackend`. A new runtime is a
class with ``run(crops) -> heatmaps`` and ``input_hw`` in a module of its own here, entered
in :data:`BACKENDS`.
"""

from __future__ import annotations

import logging
import os

from evopose_sdk.backends.base import Backend, native_stderr_to_log
from evopose_sdk.backends.onnx_runtime import (
    DEVICE_PROVIDERS,
    OnnxBackend,
    onnx_providers,
    parse_device,
    session_device,
)
from evopose_sdk.backends.tflite import TFLiteBackend

__all__ = ["BACKENDS", "DEVICE_PROVIDERS", "Backend", "OnnxBackend", "TFLiteBackend",
           "make_backend", "native_stderr_to_log", "onnx_providers", "parse_device",
           "session_device"]

logger = logging.getLogger(__name__)


BACKENDS = {"onnxruntime": OnnxBackend, "onnx": OnnxBackend, "tflite": TFLiteBackend}


def make_backend(path: str | os.PathLike | bytes, backend: str | None = None,
                 threads: int | None = None, input_name: str = "image",
                 output_name: str = "heatmaps", device: str | None = None) -> Backend:
    """Backend for a model file (or in-memory model bytes, then with ``backend`` given);
    ``backend=None`` picks it from the file extension. ``device`` (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ...) picks the ONNX Runtime provider; LiteRT runs on the CPU (a warning
    says so for another device)."""
    if backend is None and isinstance(path, bytes | bytearray):
        raise ValueError("an in-memory model needs backend='onnxruntime' or 'tflite'")
    if backend is None:
        backend = "tflite" if str(path).lower().endswith(".tflite") else "onnxruntime"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(set(BACKENDS))}")
    name, _ = parse_device(device)
    if BACKENDS[backend] is OnnxBackend:
        return OnnxBackend(path, threads=threads, input_name=input_name, output_name=output_name,
                           providers=onnx_providers(device, "the pose model"))
    if name != "cpu":
        logger.warning("device %r: the %s backend runs on the CPU; for %s use an ONNX "
                       "model with onnxruntime (--precision fp32 / backend='onnxruntime')",
                       device, backend, name)
    return BACKENDS[backend](path, threads=threads, input_name=input_name, output_name=output_name)
