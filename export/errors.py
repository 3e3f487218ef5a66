"""Errors raised by the export stage."""

from __future__ import annotations

from evopose_sdk.errors import EvoPoseError


class ExportError(EvoPoseError, ValueError):
    """An export cannot run: bad input file, bad option, or a failed conversion.

    The message names the file or option at fault; the CLI prints it without a traceback.
    """

