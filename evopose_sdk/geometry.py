"""Crop geometry shared by the runtime and the training pipeline (one implementation).

Conventions (see DESIGN.md "Geometry"):

* Pixel centres: pixel ``i`` of an image covers ``[i - 0.5, i + 0.5]``; integer coordinates
  are pixel centres. This is also what ``cv2.warpAffine`` uses.
* A crop is described by a centre ``(cx, cy)`` and a size ``(w, h)`` in image pixels at the
  model's aspect ratio. The affine matrix maps the box edges ``[cx - w/2, cx + w/2]`` onto
  the crop's outer pixel edges ``[-0.5, W - 0.5]``.
* A heatmap of stride ``s`` has cell ``j`` covering crop pixels ``[j*s, (j+1)*s - 1]``, so its
  centre is the crop coordinate ``j*s + (s - 1)/2``. Under this convention a horizontal flip
  of the crop is exactly a flip of the heatmap array: no extra shift is needed.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Padding factor applied to a person box before cropping.
DEFAULT_PADDING = 1.25


def box_to_center_size(
    box_xyxy: np.ndarray | list[float],
    aspect_ratio: float,
    padding: float = DEFAULT_PADDING,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a box into a crop centre and size at the model's aspect ratio.

    Args:
        box_xyxy: (4,) box ``x1, y1, x2, y2`` in image pixels (pixel-edge extents).
        aspect_ratio: model input width / height (e.g. 192/256 = 0.75).
        padding: factor applied to the box after fixing its aspect ratio.

    Returns:
        ``center`` (2,) and ``size`` (2,) = (w, h), both float64, in image pixels.

    Raises:
        ValueError: if the box is not 4 finite numbers or aspect_ratio/padding is not positive.
    """
    box = np.asarray(box_xyxy, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"box must be 4 finite numbers x1, y1, x2, y2; received: {box_xyxy!r}")
    if aspect_ratio <= 0 or padding <= 0:
        raise ValueError(
            f"aspect_ratio and padding must be positive; received: {aspect_ratio}, {padding}")
    x1, y1, x2, y2 = box
    w = max(x2 - x1, 1.0)
    h = max(y2 - y1, 1.0)
    center = np.array([(x1 + x2) / 2.0, (y1 + y2) / 2.0])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return center, np.array([w * padding, h * padding])


def crop_affine(
    center: np.ndarray,
    size: np.ndarray,
    output_hw: tuple[int, int],
    rotation_deg: float = 0.0,
) -> np.ndarray:
    """Affine matrix (2, 3) mapping image coordinates to crop coordinates.

    Args:
        center: (2,) crop centre in image pixels.
        size: (2,) crop size (w, h) in image pixels.
        output_hw: crop size (H, W) in pixels.
        rotation_deg: rotation of the crop, counter-clockwise in degrees (augmentation).

    Returns:
        (2, 3) float64 matrix for ``cv2.warpAffine``.
    """
    out_h, out_w = int(output_hw[0]), int(output_hw[1])
    sx = out_w / float(size[0])
    sy = out_h / float(size[1])
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # x_out = S R (x - c) + ((W-1)/2, (H-1)/2); rotation in image axes (y down), so a
    # positive angle turns the person counter-clockwise on screen.
    lin = np.array([[sx * cos, sx * sin], [-sy * sin, sy * cos]], dtype=np.float64)
    offset = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0]) - lin @ np.asarray(center, np.float64)
    return np.concatenate([lin, offset[:, None]], axis=1)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, as a (2, 3) matrix."""
    full = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(points_xy: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points (..., 2); returns float64 (..., 2)."""
    pts = np.asarray(points_xy, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp_crop(image: np.ndarray, matrix: np.ndarray, output_hw: tuple[int, int],
              border_value: int | tuple[int, ...] = 0) -> np.ndarray:
    """Warp ``image`` (H, W, C) uint8 into a crop (h, w, C) with the given affine matrix."""
    return cv2.warpAffine(
        image, np.asarray(matrix, np.float64), (int(output_hw[1]), int(output_hw[0])),
        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


def heatmap_to_crop(points_xy: np.ndarray, stride: float) -> np.ndarray:
    """Heatmap-cell coordinates (..., 2) -> crop pixel coordinates (pixel-centre convention)."""
    return np.asarray(points_xy, np.float64) * stride + (stride - 1.0) / 2.0


def crop_to_heatmap(points_xy: np.ndarray, stride: float) -> np.ndarray:
    """Crop pixel coordinates (..., 2) -> heatmap-cell coordinates (pixel-centre convention)."""
    return (np.asarray(points_xy, np.float64) - (stride - 1.0) / 2.0) / stride


def clip_box(box_xyxy: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Clip boxes (..., 4) xyxy to the image extent ``[0, W] x [0, H]``."""
    b = np.asarray(box_xyxy, np.float64).copy()
    h, w = image_hw
    b[..., [0, 2]] = np.clip(b[..., [0, 2]], 0.0, float(w))
    b[..., [1, 3]] = np.clip(b[..., [1, 3]], 0.0, float(h))
    return b
