"""The heatmap codec: encode/decode round trip on real people, sub-pixel accuracy, pack/split.

Real keypoints come from the shared data (official COCO labels of ``tinycoco``; failing
clearly without it): each person is cropped as the runtime crops it
(:func:`evopose_sdk.topdown.box_affine`), its labelled keypoints are encoded into targets and
decoded again.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _training_helpers import require_data

from evopose_sdk import geometry
from evopose_sdk.card import ModelCard
from evopose_sdk.codec import HeatmapCodec, default_sigma
from evopose_sdk.topdown import box_affine


@pytest.fixture(scope="module")
def real_people() -> list[tuple[np.ndarray, np.ndarray]]:
    """(box xyxy (4,), keypoints (17, 3) x, y, v in image pixels) of 60 labelled people."""
    root = require_data("tinycoco")
    coco = json.loads((root / "tinycoco" / "annotations.json").read_text())
    out = []
    for a in sorted(coco["annotations"], key=lambda a: a["id"]):
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) < 8:
            continue
        x, y, w, h = a["bbox"]
        out.append((np.array([x, y, x + w, y + h]), np.asarray(a["keypoints"], float).reshape(-1, 3)))
    assert len(out) >= 60
    return out[:60]


def _crop_keypoints(people, input_hw) -> tuple[np.ndarray, np.ndarray]:
    """(N, 17, 2) crop-pixel keypoints and (N, 17) labelled flags of the people's crops."""
    kps, vis = [], []
    for box, kp in people:
        kps.append(geometry.apply_affine(kp[:, :2], box_affine(box, input_hw)))
        vis.append(kp[:, 2] > 0)
    return np.stack(kps), np.stack(vis)


@pytest.mark.parametrize(("input_hw", "stride", "method", "tol_px"), [
    ((256, 192), 4, "dark", 0.05), ((256, 192), 2, "dark", 0.05), ((128, 96), 2, "dark", 0.05),
    ((256, 192), 4, "quarter", 0.25 * 4 + 0.5), ((256, 192), 4, "argmax", 0.5 * 4 + 1e-6)])
def test_round_trip_on_real_keypoints(real_people, input_hw, stride, method, tol_px) -> None:
    codec = HeatmapCodec(input_hw, stride, decode_method=method)
    kps, vis = _crop_keypoints(real_people, input_hw)
    encoded = [codec.encode(k, v) for k, v in zip(kps, vis, strict=True)]
    heatmaps = np.stack([h for h, _ in encoded])
    weights = np.stack([w for _, w in encoded])
    assert heatmaps.shape == (len(kps), *codec.heatmap_size, 17) and heatmaps.dtype == np.float32
    decoded, scores = codec.decode(heatmaps)
    assert decoded.shape == kps.shape and scores.shape == vis.shape
    # DARK's blur reflects at the map's edge, which biases peaks within ~3 sigma of it (up to
    # 1.4 cells at 1 cell from the edge): the sub-pixel bound holds 3 sigma inside
    cells = geometry.crop_to_heatmap(kps, stride)
    hh, ww = codec.heatmap_size
    m = 3 * codec.sigma_cells
    interior = (weights > 0) & np.all((cells >= m) & (cells <= [ww - 1 - m, hh - 1 - m]), axis=-1)
    assert interior.sum() > 300
    err = np.abs(decoded - kps)[interior]
    assert err.max() < tol_px, f"{method} stride {stride}: max error {err.max():.4f} px"
    np.testing.assert_allclose(scores[interior], 1.0, atol=0.1)


def test_sub_pixel_accuracy_beats_the_cell(real_people) -> None:
    """DARK decoding of exact targets is far finer than a heatmap cell at stride 4."""
    codec = HeatmapCodec((256, 192), 4)
    kps, vis = _crop_keypoints(real_people, codec.input_size)
    hm = np.stack([codec.encode(k, v)[0] for k, v in zip(kps, vis, strict=True)])
    w = np.stack([codec.encode(k, v)[1] for k, v in zip(kps, vis, strict=True)]) > 0
    w &= np.all((kps >= 24) & (kps <= [192 - 24, 256 - 24]), axis=-1)  # 3 sigma inside
    dark = np.linalg.norm(codec.decode(hm)[0] - kps, axis=-1)[w]
    argmax = np.linalg.norm(HeatmapCodec((256, 192), 4, decode_method="argmax")
                            .decode(hm)[0] - kps, axis=-1)[w]
    assert np.median(dark) < 0.01 < 0.5 < np.median(argmax)


def test_weights_and_empty_maps_for_unlabelled_and_outside_joints() -> None:
    codec = HeatmapCodec((256, 192), 4)
    kp = np.array([[96.0, 128.0], [50.0, 60.0], [-40.0, 10.0], [189.4, 253.4], [np.nan, 3.0]])
    vis = np.array([True, False, True, True, True])
    hm, w = codec.encode(kp, vis)
    np.testing.assert_array_equal(w, [1, 0, 0, 1, 0])
    assert hm.shape == (64, 48, 5)
    assert hm[..., 1].max() == 0 and hm[..., 2].max() == 0 and hm[..., 4].max() == 0
    assert hm[..., 0].max() == pytest.approx(np.exp(-(0.375 ** 2) / 8) ** 2, rel=1e-5)
    assert codec.sigma_cells == default_sigma((64, 48)) == 2.0


def test_sigma_scales_with_the_heatmap() -> None:
    assert HeatmapCodec((256, 192), 2).sigma_cells == 4.0
    assert HeatmapCodec((128, 96), 4).sigma_cells == 1.0
    assert HeatmapCodec((256, 192), 4, sigma=3.0).sigma_cells == 3.0


def test_pack_split_round_trip_keeps_the_loss_layout() -> None:
    rng = np.random.default_rng(0)
    hm = rng.random((3, 8, 6, 17)).astype(np.float32)
    w = (rng.random((3, 17)) > 0.3).astype(np.float32)
    y = HeatmapCodec.pack(hm, w)
    assert y.shape == (3, 8, 6, 34) and y.dtype == np.float32
    # layout the training checkpoints were written with: heatmaps first, then weights
    np.testing.assert_array_equal(y[..., :17], hm)
    np.testing.assert_array_equal(y[..., 17:], np.broadcast_to(w[:, None, None], hm.shape))
    for k in (None, 17):
        t, wb = HeatmapCodec.split(y, k)
        np.testing.assert_array_equal(t, hm)
        np.testing.assert_array_equal(wb[:, 0, 0], w)


def test_from_card_and_from_shapes() -> None:
    card = ModelCard(name="x", input_size=(256, 192), heatmap_stride=2)
    codec = HeatmapCodec.from_card(card, decode_method="quarter")
    assert (codec.input_size, codec.heatmap_stride, codec.heatmap_size) == ((256, 192), 2, (128, 96))
    assert codec.decode_method == "quarter"
    assert HeatmapCodec.from_shapes((256, 192), (64, 48)) == HeatmapCodec((256, 192), 4)


@pytest.mark.parametrize(("make", "error"), [
    (lambda: HeatmapCodec((256, 192), 0), "heatmap_stride"),
    (lambda: HeatmapCodec((2, 192), 4), "input_size"),
    (lambda: HeatmapCodec((256, 192), 4, sigma=0), "sigma"),
    (lambda: HeatmapCodec((256, 192), 4, decode_method="soft"), "unknown decode method"),
    (lambda: HeatmapCodec.from_shapes((256, 192), (64, 47)), "no common whole stride"),
    (lambda: HeatmapCodec((256, 192), 4).encode(np.zeros((17, 3)), np.ones(17, bool)), r"\(K, 2\)"),
    (lambda: HeatmapCodec((256, 192), 4).encode(np.zeros((17, 2)), np.ones(16, bool)), r"\(17,\)"),
    (lambda: HeatmapCodec((256, 192), 4).decode(np.zeros((1, 32, 24, 17))), r"\(N, 64, 48, K\)"),
    (lambda: HeatmapCodec.pack(np.zeros((2, 8, 6, 17)), np.zeros((2, 16))), "weights"),
])
def test_bad_arguments_raise_value_errors(make, error) -> None:
    with pytest.raises(ValueError, match=error):
        make()
