"""The root of every error evopose-sdk raises on purpose, and the runtime's own errors.

Every error names the file, shape or value at fault. ``EvoPoseError`` catches everything the
package raises on purpose, in all stages: the runtime's classes below, ``CardError``,
training's ``ConfigError``, ``DataError``, ``GenotypeError``, ``CheckpointError``,
``TorchPickleError``, ``RecoveryError``, the search's ``SearchConfigError``, ``SearchStateError`` and
``SearchInterrupted`` (and the cluster check's ``ScenarioError``), and export's ``ExportError``. Most also subclass :class:`ValueError`
(the search's state and interrupt errors :class:`RuntimeError`), so callers that catch
those keep working. The command-line tools print an ``EvoPoseError`` as one line and exit 1,
or 130 for a :class:`RunInterrupted` (:mod:`evopose_sdk.cli_shell`).
"""

from __future__ import annotations


class EvoPoseError(Exception):
    """Base class of all errors raised on purpose by evopose-sdk."""


def did_you_mean(word: str, choices, *, cutoff: float = 0.6, n: int = 1,
                 quote: bool = True) -> str:
    """The one "did you mean" hint of every error message: ``"did you mean 'x'?"`` (the
    ``n`` nearest of ``choices`` by :func:`difflib.get_close_matches`, joined by " or "), or
    "" when none is within ``cutoff`` (0-1 similarity). ``quote`` wraps each in ``repr``."""
    import difflib  # noqa: PLC0415  (only on an error path)

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)
    if not close:
        return ""
    return "did you mean " + or_list(close, quote=quote) + "?"


def or_list(choices, *, quote: bool = True) -> str:
    """``"'a' or 'b'"``: the choices of an error message (``quote=False``: ``"a or b"``)."""
    return " or ".join(repr(c) if quote else str(c) for c in choices)


class InputError(EvoPoseError, ValueError):
    """A bad image, array or box passed by the caller (missing, corrupt, wrong shape/dtype)."""


class ModelError(EvoPoseError, ValueError):
    """A model file or card that cannot be found, loaded, verified or is not a pose model."""


class DetectorError(EvoPoseError, ValueError):
    """A person detector that cannot be built or returns malformed output."""


class VideoError(EvoPoseError, ValueError):
    """A video source that cannot be opened or read (used by :mod:`evopose_sdk.video`)."""


class RunInterrupted(EvoPoseError):
    """Work stopped by SIGINT or SIGTERM after keeping what was done (the CLIs exit 130)."""
