"""Environment defaults for TensorFlow and Keras: the one place they are set.

The entry points (:func:`evopose_sdk.cli_shell.run_main`) and the export stage's Keras import
(:mod:`evopose_sdk.export._backend`) call :func:`set_env_defaults` before TensorFlow or Keras
is imported. Values already in the environment win, so a user (or a test) pins any of them
by setting it, e.g. ``TF_ENABLE_ONEDNN_OPTS=0`` for TensorFlow's plain kernels.
"""

from __future__ import annotations

import os

#: Defaults of variables read when TensorFlow / Keras are imported.
ENV_DEFAULTS: dict[str, str] = {
    # Keras 3 backend: TensorFlow on CPU and for export; set KERAS_BACKEND=jax on a GPU
    # machine (training only; export checks that it runs on TensorFlow)
    "KERAS_BACKEND": "tensorflow",
    # TensorFlow's C++ log: errors only surface as Python exceptions; no banners
    "TF_CPP_MIN_LOG_LEVEL": "3",
    # oneDNN kernels (TensorFlow's own default on x86 Linux; setting it explicitly drops
    # the banner): 36 vs 27 img/s training S at 128x96 on 2 cores; results differ from the
    # plain kernels by float round-off only, far inside the export parity limits
    "TF_ENABLE_ONEDNN_OPTS": "1",
}


def set_env_defaults() -> None:
    """Set every variable of :data:`ENV_DEFAULTS` that the environment does not set."""
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
