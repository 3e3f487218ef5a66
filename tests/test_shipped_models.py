"""The models shipped in models/: cards, files and real accuracy of the default model.

The accuracy test poses real dev_val people (official COCO labels, ../shared/data; failing
clearly without it) on their ground-truth boxes and scores them with the COCO OKS, against
a baseline that knows the box but not the image (each keypoint at its mean position in
the box over the same people). A broken model, export or decoder falls to that baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _training_helpers import DATA_ROOT, REPO, require_data

from evopose_sdk import PoseEstimator
from evopose_sdk.card import CardError, ModelCard, card_path_for, sha256_file
from evopose_sdk.nms import keypoint_oks
from evopose_sdk.registry import DEFAULT_MODEL, available_models, read_embedded_card, resolve_model
from evopose_sdk.skeleton import COCO_SIGMAS

SHIPPED = sorted(p for p in (REPO / "models").iterdir() if p.suffix in (".onnx", ".tflite"))


def test_default_model_is_shipped_trained_and_matches_its_card():
    resolved = resolve_model(DEFAULT_MODEL)
    assert resolved.path.parent == REPO / "models"
    assert resolved.card.trained
    assert resolved.path.suffix == ".onnx" and resolved.card.precision == "fp32"
    assert tuple(resolved.card.input_size) == (256, 192)  # EvoPose2D-S at the paper's input
    names = {m.path.name for m in available_models()}
    assert {f"{DEFAULT_MODEL}.onnx", f"{DEFAULT_MODEL}_fp16.tflite",
            f"{DEFAULT_MODEL}_int8.tflite"} <= names
    # the int8 file comes from the same (quantisation-aware) weights as fp32
    int8 = resolve_model(DEFAULT_MODEL, precision="int8")
    assert int8.card.recipe["export"]["calibration"]["ranges"] == "mse"
    assert int8.card.recipe["stages"] == resolved.card.recipe["stages"]
    assert int8.card.recipe["config"]["quantize"]["aware"] is True


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_card_holds_hash_and_measured_dev_val_table(path):
    card = ModelCard.load(card_path_for(path))
    assert card.sha256 == sha256_file(path)
    assert card.trained and card.genotype and card.training_data
    assert path.stat().st_size < 12e6  # "a few MB"
    dev = card.metrics["dev_val"]
    assert dev["people"] == 300
    rows = {(r["boxes"], r["flip"], r["decode"]): r for r in dev["rows"]}
    for key in [("gt", True, "dark"), ("gt", False, "dark"), ("detector", True, "dark")]:
        assert 0.0 < rows[key]["AP"] <= 1.0
    peers = {p["model"] for p in dev["peers_same_gt_boxes"]}
    assert {"movenet_lightning", "movenet_thunder"} <= peers
    assert card.recipe["config"]["model"]["input_hw"] == list(card.input_size)


def _gt_flip_ap(card: ModelCard) -> float:
    return next(r["AP"] for r in card.metrics["dev_val"]["rows"]
                if r["boxes"] == "gt" and r["flip"] and r["decode"] == "dark")


def test_every_shipped_int8_file_is_within_two_ap_of_its_fp32_model():
    cards = [ModelCard.load(card_path_for(p)) for p in SHIPPED]
    fp32 = {c.name: _gt_flip_ap(c) for c in cards if c.precision == "fp32"}
    int8 = {c.name: _gt_flip_ap(c) for c in cards if c.precision == "int8"}
    assert int8
    for name, ap in int8.items():
        assert name in fp32, f"{name}: int8 shipped without its fp32 model"
        assert fp32[name] - ap < 0.02, (name, fp32[name], ap)


def test_shipped_cards_without_oks_sigmas_get_cocos_and_the_onnx_card_matches_its_json():
    """Cards written before ``oks_sigmas`` existed (the default's) get COCO's (17 keypoints);
    newer ones (the fast model's) carry COCO's; the card embedded in each ONNX file still
    equals its sidecar apart from the sha256."""
    written = {path.name: "oks_sigmas" in json.loads(card_path_for(path).read_text())
               for path in SHIPPED}
    assert not all(written.values()) and any(written.values()), written  # both kinds covered
    for path in SHIPPED:
        card = ModelCard.load(card_path_for(path))
        np.testing.assert_array_equal(card.oks_sigmas, COCO_SIGMAS)
        if path.suffix == ".onnx":
            embedded = read_embedded_card(path)
            assert {**embedded.to_dict(), "sha256": ""} == {**card.to_dict(), "sha256": ""}
    two = dict(name="x", input_size=(64, 48), heatmap_stride=4, keypoint_names=["a", "b"],
               flip_pairs=[], skeleton=[])
    assert ModelCard(**two).oks_sigmas == [0.05, 0.05]
    assert ModelCard.from_dict({**two, "oks_sigmas": [0.1, 0.2]}).oks_sigmas == [0.1, 0.2]
    with pytest.raises(CardError, match="oks_sigmas must be 2 positive numbers"):
        ModelCard(**two, oks_sigmas=[0.1])


def _dev_val_people(limit: int) -> list[tuple[str, dict]]:
    out = []
    for src in ("tinycoco", "cocomini_train"):
        d = json.loads((DATA_ROOT / src / "annotations.json").read_text())
        images = {im["id"]: im for im in d["images"] if im.get("split") == "dev_val"}
        for a in d["annotations"]:
            if a["image_id"] in images and a["num_keypoints"] >= 8 and a["area"] > 4000:
                out.append((str(DATA_ROOT / src / "images" / images[a["image_id"]]["file_name"]),
                            a))
    return out[:limit]


@pytest.mark.parametrize("model,precision", [(DEFAULT_MODEL, "fp32"), (DEFAULT_MODEL, "int8"),
                                             ("evopose2d-s-160", "int8")])
def test_shipped_models_pose_real_people(model, precision):
    require_data("tinycoco")
    people = _dev_val_people(40)
    assert len(people) >= 20
    gts = [np.asarray(a["keypoints"], float).reshape(17, 3) for _, a in people]
    # baseline: every keypoint at its mean relative position in the box (computed on these
    # very people, so it is an optimistic box-only guess)
    rel = [((g[:, :2] - a["bbox"][:2]) / a["bbox"][2:], g[:, 2] > 0)
           for g, (_, a) in zip(gts, people, strict=True)]
    mean_rel = np.array([np.mean([r[k] for r, m in rel if m[k]], axis=0) if any(
        m[k] for _, m in rel) else [0.5, 0.5] for k in range(17)])

    def scores(preds):
        body, good = [], []
        for pred, g, (_, a) in zip(preds, gts, people, strict=True):
            lab = g[:, 2] > 0
            oks = keypoint_oks(pred[:, :2], g[:, :2], a["area"])
            body.extend(oks[5:][lab[5:]])
            good.append(oks[lab].mean() > 0.5)
        return float(np.mean(body)), float(np.mean(good))

    baseline = [np.asarray(a["bbox"][:2]) + mean_rel * a["bbox"][2:] for _, a in people]
    preds = []
    with PoseEstimator(model=model, precision=precision, threads=2) as est:
        for path, a in people:
            x, y, w, h = a["bbox"]
            preds.append(est.estimate_boxes(path, [[x, y, x + w, y + h]]).keypoints[0])
    body_model, good_model = scores(preds)
    body_base, good_base = scores(baseline)
    print(f"body OKS {body_model:.3f} vs box-only {body_base:.3f}; people OKS>0.5 "
          f"{good_model:.2f} vs {good_base:.2f}")
    assert body_model > body_base + 0.1, (body_model, body_base)
    assert good_model > good_base + 0.15, (good_model, good_base)
