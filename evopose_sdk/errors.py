"""Error classes of the runtime. Every error names the file, shape or value at fault.

``InputError`` and ``ModelError`` subclass :class:`ValueError` so callers that catch
``ValueError`` keep working; ``EvoPoseError`` catches everything this package raises on
purpose.
"""

from __future__ import annotations


class EvoPoseError(Exception):
    """Base class of all errors raised on purpose by evopose-sdk."""


class InputError(EvoPoseError, ValueError):
    """A bad image, array or box passed by the caller (missing, corrupt, wrong shape/dtype)."""


class ModelError(EvoPoseError, ValueError):
    """A model file or card that cannot be found, loaded, verified or is not a pose model."""


class DetectorError(EvoPoseError, ValueError):
    """A person detector that cannot be built or returns malformed output."""


class VideoError(EvoPoseError, ValueError):
    """A video source that cannot be opened or read (used by :mod:`evopose_sdk.video`)."""
