"""The one top-down pipeline around any ``run(crops)``: with the shipped model, with an oracle
that returns the codec's own targets, and the in-memory backends export parity runs.

Real people: official COCO labels of ``tinycoco`` from the shared data (failing clearly
without it); the model: the shipped default ONNX file.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from _training_helpers import REPO, require_data

from evopose_sdk import PoseEstimator, geometry
from evopose_sdk.backends import make_backend
from evopose_sdk.card import ModelCard, card_path_for
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.topdown import TopDownPipeline, instance_scores

MODEL = REPO / "models" / "evopose2d-s.onnx"


@pytest.fixture(scope="module")
def images_with_people() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image BGR, GT boxes xyxy (n, 4), keypoints (n, 17, 3)) of 6 tinycoco images."""
    root = require_data("tinycoco")
    coco = json.loads((root / "tinycoco" / "annotations.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) >= 5:
            by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in sorted(coco["images"], key=lambda im: im["id"]):
        anns = by_image.get(im["id"])
        if not anns:
            continue
        img = cv2.imread(str(root / "tinycoco" / "images" / im["file_name"]), cv2.IMREAD_COLOR)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        out.append((img, boxes, np.stack([np.reshape(a["keypoints"], (17, 3)) for a in anns])))
        if len(out) == 6:
            return out
    pytest.fail("fewer than 6 tinycoco images with people", pytrace=False)


@pytest.fixture(scope="module")
def shipped():
    card = ModelCard.load(card_path_for(MODEL))
    backend = make_backend(MODEL, threads=2)
    yield card, backend
    backend.close()


def test_estimator_is_the_pipeline_around_its_backend(shipped, images_with_people) -> None:
    card, backend = shipped
    pipe = TopDownPipeline(HeatmapCodec.from_card(card), card.flip_pairs, max_batch=8)
    with PoseEstimator(MODEL, detector="whole-image", threads=2, flip_test=True) as est:
        for img, boxes, _ in images_with_people:
            h, w = img.shape[:2]
            # the estimator's box policy: float32 boxes clipped to the image
            boxes = geometry.clip_box(boxes, (h, w)).astype(np.float32)
            poses = pipe(backend.run, img, boxes)
            res = est.estimate_boxes(img, boxes)
            np.testing.assert_array_equal(res.keypoints, poses.keypoints)
            np.testing.assert_array_equal(res.scores, poses.instance_scores)


def test_chunked_calls_and_one_batch_agree(shipped, images_with_people) -> None:
    card, backend = shipped
    codec = HeatmapCodec.from_card(card)
    img, boxes, _ = images_with_people[0]
    whole = TopDownPipeline(codec, card.flip_pairs)(backend.run, img, boxes)
    one = TopDownPipeline(codec, card.flip_pairs, max_batch=1)(backend.run, img, boxes)
    np.testing.assert_allclose(one.keypoints_xy, whole.keypoints_xy, atol=1e-3)
    np.testing.assert_allclose(one.keypoint_scores, whole.keypoint_scores, atol=1e-5)


@pytest.mark.parametrize("stride", [2, 4])
def test_oracle_run_gives_back_the_labelled_keypoints(images_with_people, stride) -> None:
    """A ``run`` that returns the codec's targets for each crop: the pipeline must map them
    back to the labelled image keypoints (crop, encode, decode and inverse affine agree)."""
    codec = HeatmapCodec((256, 192), stride)
    pipe = TopDownPipeline(codec, flip_test=False)
    margin = 3 * codec.sigma_cells * stride  # DARK is biased near the map's edge
    checked = 0
    for img, boxes, kps in images_with_people:
        crops = pipe.preprocess(img, boxes)
        targets = []
        for m, kp in zip(crops.matrices, kps, strict=True):
            targets.append(codec.encode(geometry.apply_affine(kp[:, :2], m), kp[:, 2] > 0)[0])
        calls = []

        def oracle(x, targets=targets, calls=calls):
            calls.append(len(x))
            return np.stack(targets)

        poses = pipe.postprocess(pipe.heatmaps(oracle, crops.images), crops.matrices)
        assert calls == [len(boxes)]
        for m, kp, xy in zip(crops.matrices, kps, poses.keypoints_xy, strict=True):
            crop_xy = geometry.apply_affine(kp[:, :2], m)
            ok = (kp[:, 2] > 0) & np.all((crop_xy >= margin)
                                        & (crop_xy <= np.array([192, 256]) - 1 - margin), axis=-1)
            np.testing.assert_allclose(xy[ok], kp[ok, :2], atol=0.1)
            checked += int(ok.sum())
    assert checked > 50


def test_no_boxes_no_run_call() -> None:
    pipe = TopDownPipeline(HeatmapCodec((256, 192), 2), ((1, 2),))

    def run(_):
        raise AssertionError("run called without crops")

    poses = pipe(run, np.zeros((100, 80, 3), np.uint8), np.zeros((0, 4)))
    assert len(poses) == 0 and poses.instance_scores.shape == (0,)


def test_instance_score_ignores_weak_keypoints() -> None:
    s = np.array([[0.9, 0.7, 0.1, 0.05], [0.1, 0.15, 0.05, 0.1]], np.float32)
    np.testing.assert_allclose(instance_scores(s, np.array([1.0, 0.5])), [0.8, 0.05], rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "error"), [({"padding": 0}, "padding"),
                                               ({"max_batch": 0}, "max_batch")])
def test_bad_pipeline_options(kwargs, error) -> None:
    with pytest.raises(ValueError, match=error):
        TopDownPipeline(HeatmapCodec((256, 192), 2), **kwargs)


def test_in_memory_backends_match_the_files(shipped) -> None:
    """Export parity runs the exported bytes in the runtime's backends: same outputs as the
    files users load."""
    card, backend = shipped
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, *card.input_size, 3)).astype(np.float32)
    from_bytes = make_backend(MODEL.read_bytes(), "onnxruntime", threads=2)
    np.testing.assert_array_equal(from_bytes.run(x), backend.run(x))
    int8 = REPO / "models" / "evopose2d-s_int8.tflite"
    a, b = make_backend(int8, threads=2), make_backend(int8.read_bytes(), "tflite", threads=2)
    assert a.input_quantization == b.input_quantization and a.input_quantization[0] > 0
    np.testing.assert_array_equal(a.run(x[:1]), b.run(x[:1]))
    with pytest.raises(ValueError, match="in-memory"):
        make_backend(MODEL.read_bytes())
