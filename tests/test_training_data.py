"""Training data: samples decoded by the runtime codec, augmentation geometry, sources.

The target encoding itself is tested with the codec (tests/test_codec.py)."""

from __future__ import annotations

import json
import os
import signal

import cv2
import numpy as np
import pytest
from _training_helpers import require_data, write_coco_source

from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, CocoKeypoint
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training.batches import BatchLoader, KeypointBatches, epoch_order
from evopose_sdk.training.keypoint_sets import KeypointSet
from evopose_sdk.training.samples import AugmentConfig, make_sample
from evopose_sdk.training.sources import DataError, SourceSpec, load_sources, sources_in_root

LW, RW = int(CocoKeypoint.LEFT_WRIST), int(CocoKeypoint.RIGHT_WRIST)


def _dot_image(point, hw=(300, 400)):
    img = np.full((*hw, 3), 40, np.uint8)
    cv2.circle(img, (int(round(point[0] * 16)), int(round(point[1] * 16))), 3 * 16,
               (255, 0, 0), -1, lineType=cv2.LINE_AA, shift=4)
    return img


def _find_dot(crop):
    mask = (crop[..., 0].astype(int) - crop[..., 1].astype(int)) > 60
    ys, xs = np.nonzero(mask)
    assert len(xs) > 5, "dot not found in the crop"
    wts = (crop[ys, xs, 0].astype(float) - crop[ys, xs, 1])
    return np.array([np.sum(xs * wts) / wts.sum(), np.sum(ys * wts) / wts.sum()])


def _person():
    kps = np.zeros((17, 3))
    rng = np.random.default_rng(3)
    kps[:, 0] = rng.uniform(150, 250, 17)
    kps[:, 1] = rng.uniform(80, 260, 17)
    kps[:, 2] = 2
    kps[LW, :2] = (171.3, 142.6)          # the person's left wrist (image right of centre-left)
    kps[RW, :2] = (231.0, 150.0)
    return kps


def test_flip_swaps_left_and_right_and_moves_the_wrist_with_the_pixels():
    kps = _person()
    img = _dot_image(kps[LW, :2])
    box = np.array([140.0, 70.0, 120.0, 200.0])
    plain = make_sample(img, box, kps, (256, 192), 4, augment=AugmentConfig(enabled=False))
    aug = AugmentConfig(scale_factor=0.0, rotation_prob=0.0, flip_prob=1.0,
                          half_body_prob=0.0, color_jitter=0.0)
    flipped = make_sample(img, box, kps, (256, 192), 4, augment=aug,
                            rng=np.random.default_rng(0))
    assert flipped["flipped"]
    # the crop is the mirror image of the plain crop
    assert np.abs(flipped["image"].astype(int) - plain["image"][:, ::-1].astype(int)).max() <= 2
    # the dot drawn at the left wrist is where the plain crop's left wrist is, mirrored ...
    dot_plain, dot_flip = _find_dot(plain["image"]), _find_dot(flipped["image"])
    assert np.abs(dot_plain - plain["keypoints"][LW]).max() < 0.5
    mirrored = np.array([191.0 - plain["keypoints"][LW][0], plain["keypoints"][LW][1]])
    assert np.abs(dot_flip - mirrored).max() < 0.5
    # ... and after the swap it is labelled as the (apparent) right wrist of the mirrored
    # person; the left-wrist label now holds the mirrored right wrist
    assert np.abs(flipped["keypoints"][RW] - dot_flip).max() < 0.5
    mirrored_rw = np.array([191.0 - plain["keypoints"][RW][0], plain["keypoints"][RW][1]])
    assert np.abs(flipped["keypoints"][LW] - mirrored_rw).max() < 1e-6
    # targets follow: the flipped heatmaps are the plain ones mirrored and channel-swapped
    perm = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert np.allclose(flipped["heatmaps"], plain["heatmaps"][:, ::-1][..., perm], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rotation_and_scale_map_keypoints_through_the_pixel_affine(seed):
    kps = _person()
    img = _dot_image(kps[LW, :2])
    aug = AugmentConfig(rotation=40.0, rotation_prob=1.0, flip_prob=0.0, half_body_prob=0.0,
                          color_jitter=0.0)
    s = make_sample(img, np.array([140.0, 70.0, 120.0, 200.0]), kps, (256, 192), 4,
                      augment=aug, rng=np.random.default_rng(seed))
    m = s["matrix"]
    assert abs(np.degrees(np.arctan2(m[0, 1], m[0, 0]))) > 0.1  # it did rotate
    dot = _find_dot(s["image"])
    assert np.abs(dot - s["keypoints"][LW]).max() < 0.5, (dot, s["keypoints"][LW])
    # and the heatmap peak decodes back to the same place
    coords, _ = HeatmapCodec((256, 192), 4).decode(s["heatmaps"][None])
    assert np.abs(coords[0, LW] - s["keypoints"][LW]).max() < 0.1


def test_half_body_crops_to_upper_or_lower_joints():
    kps = _person()
    kps[:11, 1] = np.linspace(80, 120, 11)    # upper body well above the lower body
    kps[11:, 1] = np.linspace(240, 290, 6)
    aug = AugmentConfig(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0,
                          flip_prob=0.0, color_jitter=0.0)
    upper = KeypointSet(COCO_KEYPOINT_NAMES, COCO_FLIP_PAIRS).upper_body
    assert list(upper) == list(range(11))
    s = make_sample(np.zeros((300, 400, 3), np.uint8), np.array([140.0, 70, 120, 200]), kps,
                      (256, 192), 4, upper_body=upper, augment=aug, rng=np.random.default_rng(1))
    w = s["weights"]
    # only the upper or only the lower body stays inside the crop
    assert (w[:11].all() and not w[11:].any()) or (w[11:].all() and not w[:11].any()), w


def test_sources_mask_missing_face_points_and_support_custom_keypoint_sets(tmp_path):
    names = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
    people = [[[100, 40, 2], [60, 100, 2], [140, 100, 1], [80, 200, 2], [120, 200, 0]]]
    write_coco_source(tmp_path / "five", names, people)
    rec = load_sources([str(tmp_path / "five")])
    assert rec.keypoint_set.names == tuple(names)
    assert rec.keypoint_set.flip_pairs == ((1, 2), (3, 4))
    b = KeypointBatches(rec, (128, 96), 4, 1, augment=False)
    images, hms, w = b.batch(0)
    assert images.shape == (1, 128, 96, 3) and hms.shape == (1, 32, 24, 5)
    assert w.tolist() == [[1, 1, 1, 1, 0]]   # v=0 -> masked, v=1 (occluded) trains
    # explicit flip pairs override the names
    rec2 = load_sources([str(tmp_path / "five")], flip_pairs=[[3, 4]])
    assert rec2.keypoint_set.flip_pairs == ((3, 4),)


def test_mixing_weights_and_deterministic_epoch_order(tmp_path):
    kp = [[[50 + i, 60, 2]] + [[0, 0, 0]] * 16 for i in range(10)]
    for name in ("a", "b"):
        write_coco_source(tmp_path / name, list(COCO_KEYPOINT_NAMES),
                          [k for k in kp], boxes=[[20, 20, 80, 120]] * 10)
    specs = [{"annotations": str(tmp_path / "a/annotations.json"),
              "images": str(tmp_path / "a/images"), "weight": 2.0},
             {"annotations": str(tmp_path / "b/annotations.json"),
              "images": str(tmp_path / "b/images"), "weight": 0.5}]
    rec = load_sources(specs)
    o1 = epoch_order(rec, 0, seed=1)
    assert len(o1) == 25
    assert np.sum(rec.source[o1] == 0) == 20 and np.sum(rec.source[o1] == 1) == 5
    assert np.array_equal(o1, epoch_order(rec, 0, seed=1))
    assert not np.array_equal(o1, epoch_order(rec, 1, seed=1))
    b = KeypointBatches(rec, (128, 96), 4, 4, seed=5)
    assert len(b) == 6
    first = b.batch(2)
    b.set_epoch(1)
    b.set_epoch(0)
    again = b.batch(2)
    for x, y in zip(first, again, strict=True):
        assert np.array_equal(x, y)


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_sources([{"annotations": str(tmp_path / "nope.json"), "images": str(tmp_path)}])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read COCO JSON"):
        load_sources([{"annotations": str(tmp_path / "bad.json"), "images": str(tmp_path)}])
    (tmp_path / "x.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="not a COCO keypoint file"):
        load_sources([{"annotations": str(tmp_path / "x.json"), "images": str(tmp_path)}])
    with pytest.raises(DataError, match="unknown source fields"):
        SourceSpec.from_any({"annotations": "a", "images": "b", "wieght": 2})
    names = ["a", "b"]
    write_coco_source(tmp_path / "k2", names, [[[10, 10, 2], [20, 20, 2]]])
    write_coco_source(tmp_path / "k17", list(COCO_KEYPOINT_NAMES),
                      [[[50, 60, 2]] * 17])
    with pytest.raises(DataError, match="must share one set"):
        load_sources([str(tmp_path / "k17"), str(tmp_path / "k2")])


def test_real_lsp_people_train_without_face_points():
    root = require_data("lsp")
    rec = load_sources(sources_in_root(root, "train", ["lsp"]))
    assert len(rec) > 1000
    b = KeypointBatches(rec.subset(np.arange(8)), (256, 192), 2, 8, augment=True)
    images, hms, w = b.batch(0)
    assert images.shape == (8, 256, 192, 3) and hms.shape == (8, 128, 96, 17)
    assert np.all(w[:, :5] == 0), "LSP has no face points: they must be masked"
    assert w[:, 5:].sum() > 8 * 6


def _coco128_batches(input_hw, stride, batch_size, seed):
    """KeypointBatches over the real coco128 people (fails without ../shared/data)."""
    root = require_data("coco128")
    rec = load_sources(sources_in_root(root, "train", ["coco128"]))
    return KeypointBatches(rec, input_hw, stride, batch_size, seed=seed)


def _assert_same_batches(ref, got):
    """Two lists of ``(i, images, heatmaps, weights)`` are equal, array for array."""
    assert [g[0] for g in got] == [r[0] for r in ref]
    for r, g in zip(ref, got, strict=True):
        for x, y in zip(r[1:], g[1:], strict=True):
            assert np.array_equal(x, y)


def test_worker_processes_give_the_same_batches_as_inline_loading():
    b = _coco128_batches((128, 96), 4, 4, seed=3)
    with BatchLoader(b, workers=0) as inline:
        ref = list(inline.iterate(epoch=1, start=1, stop=3))
    with BatchLoader(b, workers=2, use_multiprocessing=True, prefetch=2) as pool:
        got = list(pool.iterate(epoch=1, start=1, stop=3))
    assert [g[0] for g in got] == [1, 2]
    _assert_same_batches(ref, got)


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
def test_a_loop_left_early_does_not_leak_its_batches_into_the_next(processes):
    """The trainer leaves an epoch early (max_steps, a signal) with batches in flight; the
    next iteration still gets its own batches, in order."""
    b = _coco128_batches((64, 48), 2, 2, seed=5)
    with BatchLoader(b, workers=0) as inline:
        ref = list(inline.iterate(epoch=2, start=0, stop=3))
    with BatchLoader(b, workers=2, use_multiprocessing=processes, prefetch=3) as loader:
        it = loader.iterate(epoch=1, start=0)
        assert next(it)[0] == 0
        it.close()  # two or three batches of epoch 1 still owed
        got = list(loader.iterate(epoch=2, start=0, stop=3))
    assert [g[0] for g in got] == [0, 1, 2]
    _assert_same_batches(ref, got)


def test_a_worker_error_reaches_the_trainer_as_itself(tmp_path):
    """An unreadable image in a worker process raises the same DataError in the trainer,
    naming the file, the batch and the worker's traceback; the workers then shut down."""
    b = _coco128_batches((64, 48), 2, 2, seed=5)
    b.records.image_paths = np.array([str(tmp_path / "gone.jpg")] * len(b.records), dtype=object)
    loader = BatchLoader(b, workers=1, use_multiprocessing=True, prefetch=2)
    with loader, pytest.raises(DataError, match="gone.jpg") as err:
        next(loader.iterate(epoch=0))
    assert any("in data worker" in note and "batch 0 of epoch 0" in note
               for note in err.value.__notes__)
    assert loader._procs is None


def test_worker_processes_ignore_stop_signals_and_exit_with_their_loader():
    """SIGTERM/SIGINT to the whole process group (``kill -- -PGID``, Ctrl-C) must not kill the
    workers under the trainer, which stops after its checkpoint; closing the loader ends
    them, and so does the trainer's death (their pipe closes)."""
    b = _coco128_batches((64, 48), 2, 2, seed=5)
    with BatchLoader(b, workers=2, use_multiprocessing=True) as loader:
        procs = list(loader._procs._procs)
        first = next(loader.iterate(epoch=0, stop=2))  # the workers are up and serving
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)
            os.kill(proc.pid, signal.SIGINT)
        # a worker that did not ignore them dies before it reads its next request (the
        # kernel delivers a pending signal first), so serving these batches is the proof
        again = list(loader.iterate(epoch=0, stop=2))
        assert np.array_equal(again[0][1], first[1]) and len(again) == 2
        assert all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)


def test_config_overrides_and_bundled_recipes():
    cfg = cfgmod.load_config("s", ["train.epochs=3", "model.input_hw=[128,96]",
                                   "data.augment.rotation=30", "output.dir=runs/x"])
    assert cfg["train"]["epochs"] == 3 and cfg["model"]["input_hw"] == [128, 96]
    assert cfg["data"]["augment"]["rotation"] == 30 and cfg["output"]["dir"] == "runs/x"
    for name, size in (("xs", "XS"), ("s", "S"), ("m", "M"), ("l", "L")):
        c = cfgmod.load_config(name)
        t = c["train"]
        assert c["model"]["size"] == size and c["model"]["weight_decay"] == 1e-5
        assert (t["epochs"], t["batch_size"], t["lr"], t["warmup_epochs"]) == (200, 512, 2.5e-4, 5)
    with pytest.raises(cfgmod.ConfigError, match="did you mean train.epochs"):
        cfgmod.load_config("s", ["train.epoch=3"])
    with pytest.raises(cfgmod.ConfigError, match="section.key=value"):
        cfgmod.load_config("s", ["train.epochs"])
    with pytest.raises(cfgmod.ConfigError, match="neither a file"):
        cfgmod.load_config("nonexistent-config")
