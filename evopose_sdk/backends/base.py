"""What every backend shares: the :class:`Backend` protocol, :class:`RuntimeBackend` (the
facts a backend class declares about its files, read by the registry in
:mod:`evopose_sdk.backends`), the checks of a batch and of the model's output, in-memory model
bytes, and :func:`native_stderr_to_log` (native code's writes to fd 2 routed into logging;
also used when a video is opened).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from evopose_sdk.errors import ModelError

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs a pose model on a batch of crops."""

    input_hw: tuple[int, int]

    def run(self, batch_nhwc: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> (N, Hh, Ww, K) float32 heatmaps."""
        ...

    def close(self) -> None:
        """Release the runtime's resources."""
        ...


class RuntimeBackend:
    """Base of every runtime backend class: what it runs, declared as class attributes.

    The registry (:data:`evopose_sdk.backends.BACKEND_CLASSES`) reads these, so the model
    registry, the cards, the estimator's options and ``--backend`` know a new format from its
    class alone.
    """

    #: ``backend=`` name (``--backend`` choice)
    name: ClassVar[str]
    #: other ``backend=`` names that pick this class
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the card's ``file_format`` for its files
    file_format: ClassVar[str]
    #: file name suffix of its files (lower case, with the dot)
    suffix: ClassVar[str]
    #: the format's name in messages
    label: ClassVar[str]
    #: True when ``device=`` can put it on an accelerator; False: CPU only
    device_capable: ClassVar[bool] = False
    #: True when its files can carry the card in their metadata (:meth:`read_metadata`)
    embeds_card: ClassVar[bool] = False
    #: the module it imports, its distribution, and how to install it
    runtime_module: ClassVar[str]
    runtime_package: ClassVar[str]
    install_hint: ClassVar[str]

    @classmethod
    def create(cls, path: str | os.PathLike | bytes, *, threads: int | None = None,
               input_name: str = "image", output_name: str = "heatmaps",
               device: str | None = None) -> Backend:
        """A backend for ``path`` on ``device`` (a checked ``device=`` name); a CPU-only class
        ignores it (:func:`~evopose_sdk.backends.make_backend` warns)."""
        return cls(path, threads=threads, input_name=input_name,  # type: ignore[call-arg]
                   output_name=output_name)

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict[str, str]:
        """The file's key -> text metadata (empty where the format has none).

        Raises:
            ModelError: the file cannot be loaded.
        """
        return {}


def _check_batch(batch: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    b = np.asarray(batch, dtype=np.float32)
    if b.ndim != 4 or b.shape[1:] != (input_hw[0], input_hw[1], 3):
        raise ValueError(f"batch must be (N, {input_hw[0]}, {input_hw[1]}, 3); "
                         f"received {b.shape}")
    return b


def _check_heatmaps(out: np.ndarray, path: Path, n: int) -> np.ndarray:
    if out.ndim != 4 or out.shape[0] != n:
        raise ModelError(f"{path.name} is not a pose heatmap model: its output has shape "
                         f"{out.shape}, expected NHWC heatmaps ({n}, H/s, W/s, K)")
    return out.astype(np.float32, copy=False)


@contextlib.contextmanager
def native_stderr_to_log(what: str, level: int = logging.WARNING) -> Iterator[None]:
    """Route what native code writes to file descriptor 2 during the block into logging.

    LiteRT's C++ prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight
    to fd 2, past Python's logging; here such ``INFO:`` lines become info records (hidden at
    the default WARNING level) and any other line a record at ``level`` (FFmpeg's ``moov atom
    not found`` when a video is opened: debug, as the error raised says it), all prefixed
    with ``what``.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.startswith("INFO:"):
                    logger.info("%s: %s", what, line[5:].strip())
                elif line.strip():
                    logger.log(level, "%s: %s", what, line.strip())


def _model_source(model: str | os.PathLike | bytes, suffix: str) -> tuple[Path, bytes | None]:
    """(path used in messages, model bytes or None) of a file path or in-memory model."""
    if isinstance(model, bytes | bytearray):
        return Path(f"<in-memory model>{suffix}"), bytes(model)
    return Path(model), None
