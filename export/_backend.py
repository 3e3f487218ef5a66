"""Import Keras with the TensorFlow backend (the export stage always uses it).

The environment defaults (``KERAS_BACKEND=tensorflow`` among them) come from
:mod:`evopose_sdk._env`, set here too for callers of the export API that did not come
through a command-line entry point.
"""

from __future__ import annotations

from evopose_sdk._env import set_env_defaults

set_env_defaults()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from evopose_sdk.export.errors import ExportError  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ExportError(
        f"the export stage needs the TensorFlow Keras backend, but Keras was already imported "
        f"with {keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras")

__all__ = ["keras", "tf"]
