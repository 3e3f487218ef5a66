"""Import Keras with the TensorFlow backend (the export stage always uses it)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN reorders float sums (tiny run-to-run differences) and logs a banner; the Keras
# reference for parity should be the plain kernels.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from evopose_sdk.export.errors import ExportError  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ExportError(
        f"the export stage needs the TensorFlow Keras backend, but Keras was already imported "
        f"with {keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras")

__all__ = ["keras", "tf"]
