"""The keypoint set travels: training writes it beside the checkpoint, export copies it into
the card, the runtime flips by the card. End to end on LSP's own 14 joints (not COCO's 17)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from _training_helpers import require_data

from evopose_sdk import geometry
from evopose_sdk.estimator import PoseEstimator
from evopose_sdk.export import ExportError, export_model
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training.keypoint_sets import (
    KeypointSet,
    keypoints_path_for,
    read_beside,
    save_beside,
)
from evopose_sdk.training.train import train

#: LSP's 14 joints in the dataset's own order, and its limbs.
LSP_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
             "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
             "left_wrist", "neck", "head_top")
LSP_SKELETON = ((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12),
                (9, 12), (12, 13), (2, 8), (3, 9))
#: Channel i of a flipped crop's heatmaps holds joint LSP_SWAP[i] of the plain crop.
LSP_SWAP = [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13]
_FROM_COCO = {"right_ankle": 16, "right_knee": 14, "right_hip": 12, "left_hip": 11,
              "left_knee": 13, "left_ankle": 15, "right_wrist": 10, "right_elbow": 8,
              "right_shoulder": 6, "left_shoulder": 5, "left_elbow": 7, "left_wrist": 9}


def _lsp14_source(out_dir, people: int) -> dict:
    """A COCO keypoint JSON of the first ``people`` LSP people with LSP's 14 joints (the shared
    LSP folder stores them as COCO-17 body joints + ``extra_joints`` neck / head top)."""
    root = require_data("lsp") / "lsp"
    data = json.loads((root / "annotations.json").read_text(encoding="utf-8"))
    anns = data["annotations"][:people]
    keep = {a["image_id"] for a in anns}
    for a in anns:
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        extra = a["extra_joints"]
        a["keypoints"] = [float(v) for n in LSP_NAMES for v in (
            kp[_FROM_COCO[n]] if n in _FROM_COCO else extra[n])]
        a["num_keypoints"] = int(sum(v > 0 for v in a["keypoints"][2::3]))
    category = {"id": 1, "name": "person", "keypoints": list(LSP_NAMES),
                "skeleton": [[a + 1, b + 1] for a, b in LSP_SKELETON]}
    coco = {"images": [im for im in data["images"] if im["id"] in keep], "annotations": anns,
            "categories": [category]}
    path = out_dir / "lsp14.json"
    path.write_text(json.dumps(coco), encoding="utf-8")
    return {"annotations": str(path), "images": str(root / "images"), "split": "train"}


def test_sidecar_round_trip_and_bad_sidecars(tmp_path):
    kset = KeypointSet(LSP_NAMES, ((3, 2), (4, 1)), LSP_SKELETON)
    model = tmp_path / "step-000000004.keras"
    assert keypoints_path_for(model).name == "step-000000004.keypoints.json"
    assert read_beside(model) is None
    save_beside(kset, model)
    assert read_beside(model) == kset
    for bad, match in (({"keypoint_names": []}, "at least one"),
                       ({"keypoint_names": ["a", "b"], "flip_pairs": [[0, 2]]}, "out of range"),
                       ({"keypoint_names": ["a"], "skeleton": [[0, 1]]}, "indexes past"),
                       ({"names": ["a"]}, "not a keypoint set")):
        keypoints_path_for(model).write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            read_beside(model)


@pytest.fixture(scope="module")
def lsp_run(tmp_path_factory):
    """A few training steps of XS at 128x96 on 16 LSP people with 14 joints."""
    tmp = tmp_path_factory.mktemp("lsp14")
    cfg = cfgmod.load_config("xs", [
        "model.input_hw=[128,96]", "train.batch_size=4", "train.epochs=1",
        "train.steps_per_epoch=2", "train.warmup_epochs=0", "data.workers=0",
        "train.progress=false", "train.tensorboard=false", "train.log_every_steps=1",
        f"output.dir={tmp / 'run'}"])
    cfg["data"]["sources"] = [_lsp14_source(tmp, 16)]
    final = train(cfg)
    return tmp, final


def test_lsp_keypoints_travel_from_training_to_card_to_flip_test(lsp_run):
    tmp, final = lsp_run
    # training: the set beside the final model and beside every checkpoint kept
    assert final.name == "final.keras"
    kset = read_beside(final)
    assert kset.names == LSP_NAMES
    assert {frozenset(p) for p in kset.flip_pairs} == {
        frozenset((i, j)) for i, j in enumerate(LSP_SWAP) if i != j}
    assert set(kset.skeleton) == set(LSP_SKELETON)
    ckpts = sorted((final.parent / "checkpoints").glob("step-*.keras"))
    assert ckpts and all(read_beside(c) == kset for c in ckpts)

    # export: the card carries LSP's names, flip pairs and skeleton
    res = export_model(final, tmp / "exported", formats="onnx", n_parity=2)
    onnx_path = res["onnx"].path
    with PoseEstimator(model=onnx_path, flip_test=True) as est:
        card = est.card
        assert tuple(card.keypoint_names) == LSP_NAMES and card.num_keypoints == 14
        assert [tuple(p) for p in card.flip_pairs] == list(kset.flip_pairs)
        assert [tuple(p) for p in card.skeleton] == list(kset.skeleton)
        assert tuple(map(tuple, est.pipeline.flip_pairs)) == kset.flip_pairs

        # runtime: flip test mirrors the flipped crop's heatmaps back and swaps LSP's
        # left/right channels (right ankle <- left ankle, ...; neck, head top stay)
        coco = json.loads((tmp / "lsp14.json").read_text(encoding="utf-8"))
        ann = coco["annotations"][0]
        im = next(i for i in coco["images"] if i["id"] == ann["image_id"])
        image = cv2.imread(str(require_data("lsp") / "lsp" / "images" / im["file_name"]))
        x, y, w, h = ann["bbox"]
        # the estimator's box policy: float32 boxes clipped to the image
        boxes = geometry.clip_box(np.array([[x, y, x + w, y + h]]),
                                  image.shape[:2]).astype(np.float32)
        crops = est.pipeline.preprocess(image, boxes)
        x32 = crops.images.astype(np.float32)
        plain = est.backend.run(x32)
        mirrored = est.backend.run(np.ascontiguousarray(x32[:, :, ::-1, :]))
        expected = 0.5 * (plain + mirrored[:, :, ::-1, :][..., LSP_SWAP])
        np.testing.assert_allclose(est.pipeline.heatmaps(est.backend.run, crops.images),
                                   expected, rtol=1e-5, atol=1e-6)
        result = est.estimate_boxes(image, boxes)
        poses = est.pipeline.postprocess(expected, crops.matrices)
        assert result.keypoint_names == LSP_NAMES
        np.testing.assert_allclose(result.keypoints[..., :2], poses.keypoints_xy, atol=1e-3)


def test_export_refuses_a_checkpoint_without_its_keypoint_set_or_with_another(lsp_run, tmp_path):
    _, final = lsp_run
    bare = tmp_path / "bare.keras"
    bare.write_bytes(final.read_bytes())
    with pytest.raises(ExportError, match="14 output channels and no keypoint set beside it"):
        export_model(bare, tmp_path / "out", formats="onnx", n_parity=2)
    save_beside(KeypointSet(tuple(f"j{i}" for i in range(17)), ()), bare)
    with pytest.raises(ExportError, match="14 heatmap channels but its keypoint set "
                                          "bare.keypoints.json names 17"):
        export_model(bare, tmp_path / "out", formats="onnx", n_parity=2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
