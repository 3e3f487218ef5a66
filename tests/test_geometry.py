"""Crop geometry: affine round trips (with rotation), the pixel-centre convention, flips."""

from __future__ import annotations

import numpy as np
import pytest

from evopose_sdk.geometry import (
    apply_affine,
    box_to_center_size,
    clip_box,
    crop_affine,
    crop_to_heatmap,
    heatmap_to_crop,
    invert_affine,
    warp_crop,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("rotation", [0.0, 17.0, -45.0, 90.0, 180.0])
@pytest.mark.parametrize("output_hw", [(256, 192), (64, 48)])
def test_box_affine_inverse_round_trip(rotation: float, output_hw: tuple[int, int]) -> None:
    for _ in range(20):
        x1, y1 = RNG.uniform(0, 500, 2)
        box = [x1, y1, x1 + RNG.uniform(5, 300), y1 + RNG.uniform(5, 300)]
        center, size = box_to_center_size(box, output_hw[1] / output_hw[0], 1.25)
        m = crop_affine(center, size, output_hw, rotation)
        pts = RNG.uniform(-100, 800, (50, 2))
        back = apply_affine(apply_affine(pts, m), invert_affine(m))
        np.testing.assert_allclose(back, pts, atol=1e-9)
        # The box centre goes to the crop centre whatever the rotation.
        np.testing.assert_allclose(apply_affine(center, m),
                                   [(output_hw[1] - 1) / 2, (output_hw[0] - 1) / 2], atol=1e-9)


def test_crop_edges_map_to_outer_pixel_edges() -> None:
    center, size = np.array([100.0, 80.0]), np.array([60.0, 80.0])
    m = crop_affine(center, size, (256, 192))
    left_top = apply_affine(center - size / 2, m)
    right_bottom = apply_affine(center + size / 2, m)
    np.testing.assert_allclose(left_top, [-0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(right_bottom, [191.5, 255.5], atol=1e-9)


def test_box_to_center_size_fixes_aspect_and_pads() -> None:
    center, size = box_to_center_size([10, 20, 110, 420], aspect_ratio=0.75, padding=1.25)
    np.testing.assert_allclose(center, [60, 220])
    np.testing.assert_allclose(size, [300 * 1.25, 400 * 1.25])  # too tall -> widened
    center, size = box_to_center_size([0, 0, 300, 100], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(size, [300, 400])  # too wide -> heightened
    with pytest.raises(ValueError, match="4 finite"):
        box_to_center_size([0, 0, np.nan, 1], 0.75)
    with pytest.raises(ValueError, match="positive"):
        box_to_center_size([0, 0, 1, 1], 0.0)


@pytest.mark.parametrize("rotation", [0.0, 30.0, -60.0])
def test_warp_crop_moves_a_blob_where_the_affine_says(rotation: float) -> None:
    """cv2.warpAffine follows the same pixel-centre convention as apply_affine."""
    h, w = 300, 400
    p = np.array([231.3, 142.7])
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 4.0**2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    center, size = box_to_center_size([150, 60, 330, 260], 0.75, 1.25)
    m = crop_affine(center, size, (256, 192), rotation)
    crop = warp_crop(image, m, (256, 192)).astype(np.float64)[..., 0]
    cy, cx = np.mgrid[0:256, 0:192]
    got = np.array([(crop * cx).sum() / crop.sum(), (crop * cy).sum() / crop.sum()])
    np.testing.assert_allclose(got, apply_affine(p, m), atol=0.1)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_heatmap_cells_mirror_exactly_under_pixel_centres(stride: int) -> None:
    width = 48 * stride
    cells = np.arange(48, dtype=np.float64)
    x = heatmap_to_crop(np.stack([cells, cells], -1), stride)[:, 0]
    mirrored = heatmap_to_crop(np.stack([47 - cells, cells], -1), stride)[:, 0]
    np.testing.assert_allclose(mirrored, (width - 1) - x)
    pts = RNG.uniform(0, 100, (10, 2))
    np.testing.assert_allclose(crop_to_heatmap(heatmap_to_crop(pts, stride), stride), pts)


def test_clip_box() -> None:
    out = clip_box(np.array([[-10, 5, 50, 900], [700, -3, 900, 20]]), (480, 640))
    np.testing.assert_allclose(out, [[0, 5, 50, 480], [640, 0, 640, 20]])
