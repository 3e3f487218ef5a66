"""Users'-people augmentations (training/augment.py) on real LSP and LiteHRNet people."""

from __future__ import annotations

import numpy as np
import pytest
from _training_helpers import require_data

from evopose_sdk import geometry
from evopose_sdk.training import augment
from evopose_sdk.training.batches import KeypointBatches
from evopose_sdk.training.pipeline import Pipeline, steps_from_augment
from evopose_sdk.training.samples import AugmentConfig, make_sample
from evopose_sdk.training.sources import DataError, load_sources, read_image_rgb, sources_in_root


@pytest.fixture(scope="module")
def people():
    root = require_data("lsp", "litehrnet")
    specs = [s for s in sources_in_root(root, split="train")
             if "lsp/" in str(s.annotations) or "litehrnet" in str(s.annotations)]
    records = load_sources(specs)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(records), 24, replace=False)
    return [(read_image_rgb(records.image_paths[i]), records.boxes_xywh[i],
             records.keypoints[i]) for i in pick]


def test_truncation_cuts_the_frame_through_the_person(people):
    rng = np.random.default_rng(1)
    done = 0
    for image, box, kps in people:
        out = augment.truncate(image, box, kps, rng)
        if out is None:
            continue
        img2, box2, kps2 = out
        done += 1
        assert img2.shape == image.shape and img2 is not image
        removed = (kps[:, 2] > 0) & (kps2[:, 2] == 0)
        assert removed.any(), "a cut that removes no labelled joint is no truncation"
        assert (kps2[:, 2] > 0).sum() >= 4
        # the cut-off part is black (as the runtime pads outside the frame), the rest intact
        assert (img2 == 0).all(axis=2).mean() > (image == 0).all(axis=2).mean()
        kept = kps2[kps2[:, 2] > 0, :2].round().astype(int)
        assert (img2[kept[:, 1], kept[:, 0]] == image[kept[:, 1], kept[:, 0]]).all()
        for x, y in kps[removed, :2].round().astype(int):  # black within 2 px of the joint
            near = img2[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3]
            assert (near == 0).all(axis=2).any()
        # the new box is inside the old one and holds what is left of the person
        x, y, w, h = box
        assert box2[0] >= x - 1e-6 and box2[2] <= x + w + 1e-6
        assert box2[1] >= y - 1e-6 and box2[3] <= y + h + 1e-6
        np.testing.assert_array_equal(image, image.copy())  # input untouched
    assert done >= 15


def test_pasted_people_and_occluders_change_pixels_not_labels(people):
    rng = np.random.default_rng(2)
    (img_a, box_a, kps_a), (img_b, box_b, _) = people[0], people[1]
    s = make_sample(img_a, box_a, kps_a, (256, 192), 4)
    crop = s["image"]
    pasted = augment.paste_person(crop, img_b, box_b, rng)
    occluded = augment.occlude(crop, img_b, rng)
    for out in (pasted, occluded):
        assert out.shape == crop.shape and out.dtype == np.uint8
        changed = (out != crop).any(axis=2).mean()
        assert 0.02 < changed < 0.8
    # a pasted person is off centre: the crop's centre column mostly survives
    centre = (pasted[:, 80:112] != crop[:, 80:112]).any(axis=2).mean()
    assert centre < (pasted != crop).any(axis=2).mean() + 0.25


def test_degrade_blurs_and_lowres_loses_detail(people):
    rng = np.random.default_rng(3)
    crop = make_sample(*people[2], (256, 192), 4)["image"]

    def detail(img):
        return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())

    assert detail(augment.degrade(crop, rng, lowres=True)) < 0.8 * detail(crop)
    assert detail(augment.degrade(crop, rng, lowres=False)) < 0.95 * detail(crop)


def test_augmented_batches_are_deterministic_and_targets_follow_truncation():
    root = require_data("lsp")
    specs = [s for s in sources_in_root(root, split="train") if "lsp/" in
             str(s.annotations)]
    records = load_sources(specs).subset(np.arange(64))
    aug = {"truncate_prob": 1.0, "paste_person_prob": 0.5, "occlude_prob": 0.5,
           "blur_prob": 0.2, "lowres_prob": 0.2}
    a = KeypointBatches(records, (128, 96), 4, 16, augment=aug, seed=5)
    b = KeypointBatches(records, (128, 96), 4, 16, augment=aug, seed=5)
    plain = KeypointBatches(records, (128, 96), 4, 16, augment=False)
    xa, ha, wa = a.batch(1)
    xb, hb, wb = b.batch(1)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(wa, wb)
    # truncation removes labels: fewer weighted joints than the plain crops of the same people
    _, _, wp = plain.batch(1)
    assert wa.sum() < wp.sum()
    assert np.isfinite(ha).all() and ha.max() <= 1.0 + 1e-6


def test_default_augmentation_is_unchanged_by_the_new_fields():
    cfg = AugmentConfig()
    assert not Pipeline(steps_from_augment(cfg)).needs_other
    assert cfg.truncate_prob == cfg.paste_person_prob == cfg.occlude_prob == 0.0
    with pytest.raises(DataError, match="unknown augmentation"):
        AugmentConfig.from_any({"truncate_probability": 0.3})


def test_truncated_box_maps_to_a_crop_with_black_outside_the_frame(people):
    rng = np.random.default_rng(4)
    for image, box, kps in people:
        out = augment.truncate(image, box, kps, rng)
        if out is None:
            continue
        img2, box2, _ = out
        centre, size = geometry.box_to_center_size(box2, 192 / 256, geometry.DEFAULT_PADDING)
        crop = geometry.warp_crop(img2, geometry.crop_affine(centre, size, (256, 192)),
                                  (256, 192))
        assert (crop == 0).all(axis=2).mean() > 0.02
        return
    pytest.fail("no person could be truncated")


def test_dev_val_ap_by_visible_keypoints_scores_each_group_apart():
    """Spoiling only the people with fewer than 10 labelled keypoints lowers that group's AP
    and leaves the other group's exactly as it was (perfect keypoints score below 1 only
    where COCOeval's 20 detections per image cut a crowded photo)."""
    from evopose_sdk.training import evaluate

    root = require_data("coco128", "cocomini_train", "tinycoco")
    sources = [{"annotations": str(root / s / "annotations.json"),
                "images": str(root / s / "images"), "split": "dev_val"}
               for s in ("coco128", "cocomini_train", "tinycoco")]
    gt, _ = evaluate.merged_ground_truth(sources)
    people = [a for a in gt["annotations"] if a.get("num_keypoints", 0) > 0]
    few = {a["id"] for a in people if a["num_keypoints"] < 10}
    assert 0 < len(few) < len(people)

    def results(spoil: bool) -> list[dict]:
        out = []
        for a in people:
            kps = np.array(a["keypoints"], float).reshape(-1, 3)
            kps[:, 2] = 1.0
            if spoil and a["id"] in few:
                kps[:, :2] += np.sqrt(a["area"]) * 0.3
            out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "keypoints": kps.reshape(-1).tolist(), "score": 1.0,
                        "bbox": a["bbox"], "gt_id": a["id"]})
        return out

    many = {a["id"] for a in people} - few
    ap = {}
    for spoil in (False, True):
        r = results(spoil)
        ap[spoil] = (evaluate.coco_keypoint_stats(gt, r, keep=few)["AP"],
                     evaluate.coco_keypoint_stats(gt, r, keep=many)["AP"],
                     evaluate.coco_keypoint_stats(gt, r)["AP"])
    assert ap[False][0] > 0.6 and ap[False][1] > 0.6
    assert ap[True][0] < 0.3 * ap[False][0]
    assert ap[True][1] == ap[False][1]
    assert ap[True][0] < ap[True][2] < ap[True][1]
