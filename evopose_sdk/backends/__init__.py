"""Inference backends: one small class per runtime, same call, and the registry of them.

``backend.run(batch)`` takes (N, H, W, 3) float32 RGB 0-255 crops and returns NHWC float32
heatmaps (N, Hh, Ww, K). Preprocessing (normalisation) is inside the model graph; the int8
TFLite path quantises the input with the file's own parameters, as a phone app would.

Where each part lives (import everything from this package): :mod:`.base` the
:class:`Backend` protocol, :class:`RuntimeBackend` (the facts each backend class declares)
and the checks every backend shares; :mod:`.onnx_runtime` the devices and
:class:`OnnxBackend`; :mod:`.tflite` :class:`TFLiteBackend`. A new runtime format is a
:class:`RuntimeBackend` subclass with ``run(crops) -> heatmaps``, ``input_hw`` and its class
attributes (``name``, ``file_format``, ``suffix``, ...) in a module of its own here, entered in
:data:`BACKEND_CLASSES`: the model registry, the cards' ``file_format``, the estimator's
``backend=`` and ``--backend`` read it from there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from evopose_sdk.backends.base import Backend, RuntimeBackend, native_stderr_to_log
from evopose_sdk.backends.onnx_runtime import (
    DEVICE_PROVIDERS,
    OnnxBackend,
    onnx_providers,
    parse_device,
    session_device,
)
from evopose_sdk.backends.tflite import TFLiteBackend
from evopose_sdk.errors import or_list

__all__ = ["BACKENDS", "BACKEND_CLASSES", "BACKEND_NAMES", "DEFAULT_BACKEND", "DEVICE_BACKEND",
           "DEVICE_PROVIDERS", "FILE_FORMATS", "MODEL_SUFFIXES", "Backend", "OnnxBackend",
           "RuntimeBackend", "TFLiteBackend", "backend_for_format", "backend_for_path",
           "format_of_backend", "make_backend", "native_stderr_to_log", "onnx_providers",
           "parse_device", "session_device"]

logger = logging.getLogger(__name__)

#: Every runtime backend class. The first is the default: a model name without ``backend=``
#: gets its format where the model has a file in it, and an unknown suffix is read as its.
BACKEND_CLASSES: tuple[type[RuntimeBackend], ...] = (OnnxBackend, TFLiteBackend)
#: ``backend=`` name or alias -> backend class
BACKENDS: dict[str, type[RuntimeBackend]] = {
    n: cls for cls in BACKEND_CLASSES for n in (cls.name, *cls.aliases)}
#: the ``backend=`` names offered (``--backend`` choices), one per class
BACKEND_NAMES: tuple[str, ...] = tuple(cls.name for cls in BACKEND_CLASSES)
#: the card ``file_format`` values, one per class
FILE_FORMATS: tuple[str, ...] = tuple(cls.file_format for cls in BACKEND_CLASSES)
#: model file suffixes, one per class
MODEL_SUFFIXES: tuple[str, ...] = tuple(cls.suffix for cls in BACKEND_CLASSES)
DEFAULT_BACKEND: type[RuntimeBackend] = BACKEND_CLASSES[0]
#: the backend a non-CPU ``device=`` picks when none is named
DEVICE_BACKEND: type[RuntimeBackend] = next(c for c in BACKEND_CLASSES if c.device_capable)


def backend_for_format(file_format: str) -> type[RuntimeBackend]:
    """The backend class that runs a card's ``file_format``.

    Raises:
        ValueError: a format no backend runs.
    """
    for cls in BACKEND_CLASSES:
        if cls.file_format == file_format:
            return cls
    raise ValueError(f"no backend runs file_format {file_format!r}; known: "
                     f"{or_list(FILE_FORMATS)}")


def backend_for_path(path: str | os.PathLike) -> type[RuntimeBackend]:
    """The backend class for a model file by its suffix (:data:`DEFAULT_BACKEND` for another)."""
    suffix = Path(path).suffix.lower()
    return next((cls for cls in BACKEND_CLASSES if cls.suffix == suffix), DEFAULT_BACKEND)


def format_of_backend(backend: str) -> str:
    """The file format a ``backend=`` name runs (:data:`DEFAULT_BACKEND`'s for another name)."""
    return BACKENDS.get(backend, DEFAULT_BACKEND).file_format


def make_backend(path: str | os.PathLike | bytes, backend: str | None = None,
                 threads: int | None = None, input_name: str = "image",
                 output_name: str = "heatmaps", device: str | None = None) -> Backend:
    """Backend for a model file (or in-memory model bytes, then with ``backend`` given);
    ``backend=None`` picks it from the file extension. ``device`` (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ...) picks the ONNX Runtime provider; LiteRT runs on the CPU (a warning
    says so for another device)."""
    if backend is None and isinstance(path, bytes | bytearray):
        raise ValueError(f"an in-memory model needs backend={or_list(BACKEND_NAMES)}")
    if backend is None:
        backend = backend_for_path(path).name
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(set(BACKENDS))}")
    cls = BACKENDS[backend]
    name, _ = parse_device(device)
    if name != "cpu" and not cls.device_capable:
        logger.warning("device %r: the %s backend runs on the CPU; for %s use an %s model "
                       "with %s (--precision fp32 / backend=%r)", device, backend, name,
                       DEVICE_BACKEND.label, DEVICE_BACKEND.name, DEVICE_BACKEND.name)
    return cls.create(path, threads=threads, input_name=input_name, output_name=output_name,
                      device=device)
