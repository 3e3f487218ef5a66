"""Image loading and normalisation to the runtime's one image format: HxWx3 uint8 BGR.

Accepted inputs: a path (any format OpenCV decodes), or an array that is grayscale (H, W) /
(H, W, 1), 3-channel, or 4-channel (alpha dropped), uint8 or uint16 (scaled to 8 bits by
/257). Anything else raises :class:`~evopose_sdk.errors.InputError` naming the problem.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.errors import InputError

logger = logging.getLogger(__name__)

#: Images with more pixels than this are refused (10000 x 10000 is accepted; 300 MB as BGR).
DEFAULT_MAX_IMAGE_PIXELS = 150_000_000


def _check_truncated(data: bytes, path: str) -> None:
    """Raise InputError if a JPEG or PNG byte stream visibly lacks its end marker."""
    if data[:2] == b"\xff\xd8":  # JPEG: the end-of-image marker must follow the last scan.
        last_sos = data.rfind(b"\xff\xda")
        if last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0:
            raise InputError(f"truncated JPEG image {path}: no end-of-image marker after the "
                             "last scan (the file was cut short)")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            raise InputError(f"truncated PNG image {path}: no IEND chunk (the file was cut short)")


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR.

    Raises:
        InputError: the file is missing, unreadable, truncated, not an image, or too large.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"image file not found: {p}")
    if not p.is_file():
        raise InputError(f"image path is not a file: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image file {p}: {exc}") from None
    if not data:
        raise InputError(f"image file is empty (0 bytes): {p}")
    _check_truncated(data, str(p))
    buf = np.frombuffer(data, np.uint8)
    # ANYDEPTH keeps 16-bit data, ANYCOLOR keeps grayscale; unlike IMREAD_UNCHANGED this
    # applies the EXIF orientation (phone photos), as cv2.imread does by default.
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:  # e.g. a header claiming more than OpenCV's pixel limit
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise InputError(f"cannot decode image {p}: its header claims more pixels than "
                             "OpenCV decodes (2^30); the file is corrupt or far too large"
                             ) from None
        raise InputError(f"cannot decode image {p}: OpenCV: {str(exc).strip()[-200:]}") from None
    if image is None or image.size == 0:
        raise InputError(f"cannot decode image {p}: not an image OpenCV can read, or corrupt")
    return to_bgr_uint8(image, color="bgr", max_pixels=max_pixels, what=str(p))


def to_bgr_uint8(
    image: np.ndarray,
    color: str = "bgr",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    what: str = "image",
) -> np.ndarray:
    """Convert an image array to HxWx3 uint8 BGR (a copy only where a conversion is needed).

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 or uint16 array.
        color: channel order of 3/4-channel input, ``"bgr"`` (OpenCV) or ``"rgb"``.
        max_pixels: refuse images with more pixels than this.
        what: name used in error messages.

    Raises:
        InputError: naming the shape, dtype or colour order that cannot be handled.
    """
    if color not in ("bgr", "rgb"):
        raise InputError(f"color must be 'bgr' or 'rgb'; received {color!r}")
    if image is None:
        raise InputError(f"{what} is None: cv2.imread returns None for a file it cannot read "
                         "(a missing path, or not an image); check the path, or pass the path "
                         "itself to get the reason")
    if not isinstance(image, np.ndarray):
        raise InputError(f"{what} must be a numpy array or a path; received {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"{what} must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); "
                         f"received shape {image.shape}")
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise InputError(f"{what} is empty: shape {image.shape}")
    if h * w > max_pixels:
        raise InputError(f"{what} is too large: {w}x{h} = {h * w} pixels exceeds max_pixels="
                         f"{max_pixels}; downscale it first or raise the limit")
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    elif image.dtype == np.bool_ or image.dtype != np.uint8:
        raise InputError(f"{what} must be uint8 or uint16; received dtype {image.dtype}"
                         f"{_conversion_hint(image)}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(h, w)), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        code = cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if color == "rgb":
        return np.ascontiguousarray(image[:, :, ::-1])
    return np.ascontiguousarray(image)


def _conversion_hint(image: np.ndarray) -> str:
    """How to turn a non-uint8 array into uint8, judged from its value range."""
    if image.dtype == np.bool_:
        return ": convert a mask with img.astype(np.uint8) * 255"
    if image.dtype.kind not in "fiu":
        return ""
    finite = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if finite.size == 0:
        return " with no finite values"
    lo, hi = float(finite.min()), float(finite.max())
    span = f" with values in [{lo:.4g}, {hi:.4g}]"
    if lo >= 0 and hi <= 1:
        return f"{span}: scale it with (img * 255).round().clip(0, 255).astype(np.uint8)"
    if lo >= 0 and hi <= 255:
        return (f"{span}, already 0-255: convert it with "
                "img.round().clip(0, 255).astype(np.uint8) (no scaling)")
    return (f"{span}, outside 0-255 (normalised?): undo the normalisation, or rescale with "
            "((img - img.min()) * 255 / (img.max() - img.min())).astype(np.uint8)")


def load_image(
    image: str | os.PathLike | np.ndarray,
    color: str = "bgr",
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Path or array -> HxWx3 uint8 BGR (see :func:`to_bgr_uint8` for accepted arrays)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels=max_pixels)
    return to_bgr_uint8(image, color=color, max_pixels=max_pixels)
