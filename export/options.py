"""Option parsing and checks that need no TensorFlow (run before anything heavy or written)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from evopose_sdk.export.errors import ExportError
from evopose_sdk.training import genotype as gt

DEFAULT_OPSET = 17
#: int8 activation-range rules: least round-trip error per tensor, or the calibration min/max
CALIBRATIONS = ("mse", "minmax")
MIN_OPSET, MAX_OPSET = 13, 18


def check_opset(opset: int) -> int:
    """Return ``opset`` if it is in the supported range 13..18, else raise ExportError."""
    try:
        value = int(opset)
    except (TypeError, ValueError):
        raise ExportError(f"opset must be an integer; received {opset!r}") from None
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise ExportError(
            f"ONNX opset {value} is not supported: choose {MIN_OPSET}..{MAX_OPSET} "
            f"(default {DEFAULT_OPSET}); opset 19+ is not validated with tf2onnx/onnxruntime "
            "for this network")
    return value


def parse_input_size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    """``"256x192"`` or ``(256, 192)`` -> (H, W); None stays None."""
    if text is None:
        return None
    if isinstance(text, str):
        m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
        if not m:
            raise ExportError(f"input size must be HxW, e.g. 256x192; received {text!r}")
        return int(m.group(1)), int(m.group(2))
    vals = [int(v) for v in text]
    if len(vals) != 2 or min(vals) <= 0:
        raise ExportError(f"input size must be two positive integers (H, W); received {text!r}")
    return vals[0], vals[1]


def parse_genotype(value: str | Sequence[Sequence[int]] | None) -> list[list[int]] | None:
    """A genotype as ``"k3r1f2s1_..."``, a JSON list, or a nested sequence; validated."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return gt.validate(json.loads(text))
            return gt.decode(text)
        return gt.validate(value)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"invalid genotype: {exc}") from None
