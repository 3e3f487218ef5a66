"""The training sample pipeline as a list of named steps (training/pipeline.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _pipeline_digests import recipe_digests, recipe_paths
from _training_helpers import REPO, require_data

from evopose_sdk.training.pipeline import Pipeline, steps_from_augment
from evopose_sdk.training.samples import AugmentConfig
from evopose_sdk.training.sources import DataError
from evopose_sdk.training.step import STEPS

REFERENCE = json.loads((REPO / "tests" / "data" / "first_batches.json").read_text())


@pytest.mark.parametrize("recipe", sorted(REFERENCE))
def test_every_recipe_draws_the_same_first_batches_as_before_the_step_list(recipe):
    """tests/data/first_batches.json was written by the fixed-order sample code (0eb6195)
    for every recipe of that tree."""
    root = require_data("coco128")
    assert recipe_digests(REPO / recipe, root) == REFERENCE[recipe]


def test_the_recipes_are_all_checked():
    """Every recipe older than the step list (one without its own ``data.pipeline``) is in
    the reference; the distillation ablation's control arm lists the main recipe's steps and
    draws its batches."""
    old = {str(p.relative_to(REPO)) for p in recipe_paths()
           if "pipeline" not in json.loads(p.read_text(encoding="utf-8")).get("data", {})}
    assert old == set(REFERENCE)
    root = require_data("coco128")
    control = recipe_digests(REPO / "recipes/ablations/distill_a_current.json", root)
    assert control == REFERENCE["recipes/evopose2d_s256_main.json"]


def test_the_augment_steps_written_as_a_list_train_the_same():
    """The same recipe as an explicit ``data.pipeline`` list gives the same samples."""
    from evopose_sdk.training import config as cfgmod
    from evopose_sdk.training.batches import make_batches
    from evopose_sdk.training.sources import load_sources, sources_in_root

    root = require_data("coco128")
    cfg = cfgmod.load_config(REPO / "recipes" / "evopose2d_s256_main.json")
    cfg["train"]["batch_size"] = 4
    listed = cfgmod.merge(cfg, {"data": {"pipeline": Pipeline(
        steps_from_augment(cfg["data"]["augment"])).to_config()}})
    rec = load_sources(sources_in_root(root, "train", ["coco128"]))
    a = make_batches(cfg, rec, (256, 192), 2, epoch=1).batch(2)
    b = make_batches(listed, rec, (256, 192), 2, epoch=1).batch(2)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


def test_pipeline_errors_name_the_step_and_the_choices():
    with pytest.raises(DataError, match="unknown pipeline step 'ocllude'"):
        Pipeline([{"step": "crop"}, {"step": "ocllude"}, {"step": "heatmap_targets"}])
    with pytest.raises(DataError, match=r"no options \['probability'\]"):
        Pipeline([{"step": "crop"}, {"step": "occlude", "probability": 0.2},
                  {"step": "heatmap_targets"}])
    with pytest.raises(DataError, match="needs a 'crop' step"):
        Pipeline([{"step": "heatmap_targets"}])
    with pytest.raises(DataError, match="needs a target step"):
        Pipeline([{"step": "crop"}])


def test_every_registered_step_round_trips_through_its_config():
    for name, cls in STEPS.items():
        if name == "teacher_targets":
            continue  # needs a teacher model file; tested in test_teacher_targets.py
        step = cls()
        assert Pipeline([{"step": "crop"}, step.to_config(),
                         {"step": "heatmap_targets"}]).steps[1].to_config() == step.to_config()
    assert not Pipeline(steps_from_augment(AugmentConfig(enabled=False))).needs_other


def test_occluders_mark_the_joints_they_cover_hidden():
    """On real coco128 people, a pasted person / occluder patch marks exactly the labelled
    joints whose pixel it covers; drop_hidden zeroes their weights."""
    from evopose_sdk.training.batches import KeypointBatches
    from evopose_sdk.training.sources import load_sources, sources_in_root

    root = require_data("coco128")
    rec = load_sources(sources_in_root(root, "train", ["coco128"]))
    steps = [{"step": "random_affine"}, {"step": "crop"},
             {"step": "paste_person", "prob": 1.0}, {"step": "occlude", "prob": 1.0},
             {"step": "heatmap_targets", "drop_hidden": True}]
    b = KeypointBatches(rec, (256, 192), 2, 8, seed=5, pipeline=steps)
    # the same draws up to the occluders (the other person is drawn, never used)
    plain = KeypointBatches(rec, (256, 192), 2, 8, seed=5, pipeline=steps[:2] + [
        {"step": "paste_person", "prob": 1e-12}, {"step": "heatmap_targets"}])
    n_hidden = 0
    for p in range(16):
        s, s0 = b.sample(p), plain.sample(p)
        assert np.array_equal(s["keypoints"], s0["keypoints"])  # same geometry draws
        changed = np.abs(s["image"].astype(int) - s0["image"].astype(int)).sum(axis=2) > 0
        xy = np.round(s["keypoints"]).astype(int)
        for k in np.where(s["hidden"])[0]:
            assert changed[xy[k, 1], xy[k, 0]], "a hidden joint's pixel must have changed"
            assert s["weights"][k] == 0
        n_hidden += int(s["hidden"].sum())
    assert n_hidden > 5
