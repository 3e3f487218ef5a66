"""The teacher on the augmented view (training/teacher.py), with the real MoveNet Thunder.

The teacher file is built by ``bash ../shared/peers/get_peers.sh`` (/tmp/peers); without it
these tests skip, naming the command.
"""

from __future__ import annotations

import numpy as np
import pytest
from _training_helpers import require_data

from evopose_sdk.training.batches import KeypointBatches
from evopose_sdk.training.sources import load_sources, sources_in_root
from evopose_sdk.training.teacher import TeacherTargets

VIEWS = [{"step": "truncate", "prob": 0.5}, {"step": "random_affine"}, {"step": "crop"},
         {"step": "paste_person", "prob": 0.5}, {"step": "occlude", "prob": 0.5}]


@pytest.fixture(scope="module")
def records():
    if not TeacherTargets().path.is_file():
        pytest.skip(f"teacher {TeacherTargets().path} missing: run "
                    "`bash ../shared/peers/get_peers.sh` (or set EVOPOSE_TEACHER)")
    return load_sources(sources_in_root(require_data("coco128"), "train", ["coco128"]))


def test_teacher_on_the_crop_finds_the_labelled_joints(records):
    """On plain crops of real, well-labelled people the teacher's keypoints (letterboxed
    into its square input and mapped back) land on the human labels: geometry is right."""
    b = KeypointBatches(records, (256, 192), 2, 8, seed=0, augment=False)
    step = TeacherTargets()
    errs = []
    for p in range(len(b.order)):
        s = b.sample(p)
        ok = s["weights"] > 0
        if ok.sum() < 12:
            continue
        tk = step.teacher().on_crop(s["image"])
        good = ok & (tk[:, 2] > 0.5)
        errs.extend(np.linalg.norm(tk[good, :2] - s["keypoints"][good], axis=1))
    assert len(errs) > 50
    assert np.median(errs) < 6.0, f"median teacher-label distance {np.median(errs):.1f} px"


def test_mirrored_crop_gives_mirrored_teacher_keypoints(records):
    b = KeypointBatches(records, (256, 192), 2, 8, seed=0, augment=False)
    step = TeacherTargets()
    s = max((b.sample(p) for p in range(len(b.order))), key=lambda s: s["weights"].sum())
    plain = step.teacher().on_crop(s["image"])
    mirrored = step.teacher().on_crop(np.ascontiguousarray(s["image"][:, ::-1]))
    from evopose_sdk.skeleton import COCO_FLIP_PAIRS, flip_permutation

    back = mirrored[flip_permutation(17, COCO_FLIP_PAIRS)]
    back[:, 0] = 191.0 - back[:, 0]
    sure = (plain[:, 2] > 0.3) & (back[:, 2] > 0.3)
    assert sure.sum() >= 8
    assert np.median(np.linalg.norm(plain[sure, :2] - back[sure, :2], axis=1)) < 4.0


def test_fill_keeps_human_labels_and_gives_hidden_joints_the_teacher(records):
    """merge=fill: uncovered human labels keep weight 1 at their place; joints a view step
    covered or cut off get the teacher's estimate weighted by its score, or no weight."""
    steps = VIEWS + [{"step": "teacher_targets", "merge": "fill", "min_score": 0.3}]
    human = VIEWS + [{"step": "heatmap_targets"}]
    bt = KeypointBatches(records, (256, 192), 2, 8, seed=2, pipeline=steps)
    bh = KeypointBatches(records, (256, 192), 2, 8, seed=2, pipeline=human)
    filled = hidden_seen = 0
    for p in range(24):
        st, sh = bt.sample(p), bh.sample(p)
        assert np.array_equal(st["image"], sh["image"])  # the teacher draws nothing
        kept = (sh["weights"] > 0) & ~st["hidden"]
        assert np.all(st["weights"][kept] == 1.0)
        peak = st["heatmaps"].reshape(-1, 17).max(axis=0)
        assert np.allclose(peak[kept], sh["heatmaps"].reshape(-1, 17).max(axis=0)[kept])
        rest = ~kept & (st["weights"] > 0)
        assert np.all(st["weights"][rest] < 1.0) and np.all(st["weights"][rest] >= 0.3)
        filled += int(rest.sum())
        hidden_seen += int(st["hidden"].sum())
    assert filled > 20 and hidden_seen > 0
