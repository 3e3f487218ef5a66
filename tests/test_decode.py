"""Heatmap decoding recovers sub-pixel peaks; flip_back is an exact mirror with L/R swap."""

from __future__ import annotations

import numpy as np
import pytest

from evopose_sdk.decode import argmax_2d, decode_heatmaps, flip_back
from evopose_sdk.skeleton import COCO_FLIP_PAIRS


def gaussian_heatmaps(centers_xy: np.ndarray, hw: tuple[int, int], sigma: float = 2.0) -> np.ndarray:
    """(N, K, 2) centres in cells -> (N, H, W, K) float32 Gaussians (peak 1 at the centre)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c = np.asarray(centers_xy, np.float64)
    d2 = (xx[None, None] - c[..., 0, None, None]) ** 2 + (yy[None, None] - c[..., 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma**2)).transpose(0, 2, 3, 1).astype(np.float32)


@pytest.fixture(scope="module")
def subpixel_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    hw = (64, 48)
    centers = np.stack([rng.uniform(6, hw[1] - 7, (8, 17)), rng.uniform(6, hw[0] - 7, (8, 17))], -1)
    return centers, gaussian_heatmaps(centers, hw)


@pytest.mark.parametrize(("method", "tolerance"), [("dark", 0.05), ("quarter", 0.25),
                                                    ("argmax", 0.5 + 1e-6)])
def test_decode_recovers_subpixel_peak(subpixel_case, method: str, tolerance: float) -> None:
    centers, heatmaps = subpixel_case
    coords, scores = decode_heatmaps(heatmaps, method)
    assert coords.shape == (8, 17, 2) and scores.shape == (8, 17)
    err = np.abs(coords - centers)
    assert err.max() < tolerance, f"{method}: max error {err.max():.4f} cells"


def test_dark_beats_quarter_on_average(subpixel_case) -> None:
    centers, heatmaps = subpixel_case
    dark = np.abs(decode_heatmaps(heatmaps, "dark")[0] - centers).mean()
    quarter = np.abs(decode_heatmaps(heatmaps, "quarter")[0] - centers).mean()
    assert dark < quarter / 3


def test_dark_subpixel_at_stride2_heatmap_size() -> None:
    centers = np.array([[[40.37, 71.81], [12.5, 20.25], [80.9, 110.1]]])
    coords, _ = decode_heatmaps(gaussian_heatmaps(centers, (128, 96)), "dark")
    np.testing.assert_allclose(coords, centers, atol=0.05)


def test_scores_are_peak_values_and_xy_order() -> None:
    hm = np.zeros((1, 10, 20, 2), np.float32)
    hm[0, 3, 15, 0] = 0.7  # y=3, x=15
    hm[0, 8, 2, 1] = 0.2
    coords, scores = argmax_2d(hm)
    np.testing.assert_array_equal(coords[0], [[15, 3], [2, 8]])
    np.testing.assert_allclose(scores[0], [0.7, 0.2])


def test_flip_back_is_exact_mirror_with_channel_swap() -> None:
    centers = np.array([[[10.3, 20.6]] * 17])
    centers[0, 1] = [30.2, 40.1]  # left eye elsewhere
    hm = gaussian_heatmaps(centers, (64, 48))
    flipped = hm[:, :, ::-1, :]  # what the model gives on a mirrored crop (channels not swapped)
    back = flip_back(flipped, COCO_FLIP_PAIRS)
    # Channel 2 (right eye) of the flipped-back map is the mirrored left-eye map.
    np.testing.assert_array_equal(back[..., 2], hm[..., 1])
    np.testing.assert_array_equal(back[..., 0], hm[..., 0])
    # flip_back is an involution.
    np.testing.assert_array_equal(flip_back(flip_back(hm, COCO_FLIP_PAIRS), COCO_FLIP_PAIRS), hm)
    coords, _ = decode_heatmaps(flip_back(hm, COCO_FLIP_PAIRS), "dark")
    np.testing.assert_allclose(coords[0, 0], [47 - 10.3, 20.6], atol=0.05)
    np.testing.assert_allclose(coords[0, 2], [47 - 30.2, 40.1], atol=0.05)


@pytest.mark.parametrize(("heatmaps", "method", "error"), [
    (np.zeros((4, 4, 17)), "dark", ValueError),        # not NHWC
    (np.zeros((1, 4, 4, 17)), "soft-argmax", ValueError),  # unknown method
])
def test_decode_rejects_bad_input(heatmaps, method, error) -> None:
    with pytest.raises(error):
        decode_heatmaps(heatmaps, method)


def _dark_loop(heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """The DARK step as a loop over maps (the code before it was vectorised): the reference."""
    import cv2

    coords, _ = argmax_2d(heatmaps)
    hm_nkhw = heatmaps.transpose(0, 3, 1, 2)
    n, k, h, w = hm_nkhw.shape
    out = coords.copy()
    for i in range(n):
        for j in range(k):
            hm = np.ascontiguousarray(hm_nkhw[i, j])
            blurred = cv2.GaussianBlur(hm, (kernel, kernel), 0)
            if float(blurred.max()) > 0:
                blurred = blurred * (float(hm.max()) / float(blurred.max()))
            logh = np.log(np.maximum(blurred, 1e-10))
            px, py = int(coords[i, j, 0]), int(coords[i, j, 1])
            if not (1 <= px < w - 1 and 1 <= py < h - 1):
                continue
            dx = 0.5 * (logh[py, px + 1] - logh[py, px - 1])
            dy = 0.5 * (logh[py + 1, px] - logh[py - 1, px])
            dxx = logh[py, px + 1] - 2 * logh[py, px] + logh[py, px - 1]
            dyy = logh[py + 1, px] - 2 * logh[py, px] + logh[py - 1, px]
            dxy = 0.25 * (logh[py + 1, px + 1] - logh[py + 1, px - 1]
                          - logh[py - 1, px + 1] + logh[py - 1, px - 1])
            det = dxx * dyy - dxy * dxy
            if abs(det) < 1e-12 or dxx >= 0 or dyy >= 0:
                continue
            off_x, off_y = -(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det
            if abs(off_x) <= 1.0 and abs(off_y) <= 1.0:
                out[i, j] += (off_x, off_y)
    return out


@pytest.mark.parametrize("shape", [(3, 64, 48, 17), (1, 32, 24, 1), (2, 64, 48, 5)])
def test_vectorised_dark_equals_the_loop_over_maps(shape) -> None:
    rng = np.random.default_rng(3)
    noisy = rng.random(shape).astype(np.float32) ** 8  # random peaks, some on the border
    peaks = gaussian_heatmaps(rng.uniform(0, 20, (shape[0], shape[3], 2)), shape[1:3])
    edge = np.zeros(shape, np.float32)
    edge[:, 0, -1, :] = 1.0  # peak in a corner: no Taylor step
    for heatmaps in (noisy, peaks, edge, np.zeros(shape, np.float32)):
        got, _ = decode_heatmaps(heatmaps, "dark")
        np.testing.assert_allclose(got, _dark_loop(heatmaps), rtol=0, atol=1e-5)
    assert decode_heatmaps(np.zeros((0, 64, 48, 17), np.float32), "dark")[0].shape == (0, 17, 2)
