"""The EvoPose2D network family: genotype grammar, paper sizes under both Keras backends,
forward passes, and loading the authors' legacy H5 checkpoints by layer name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from evopose_sdk.training import genotype as gt

# Paper (McNally et al., 2020, Table 1/2): params (M) and multiply-accumulates (G).
PAPER_SIZES = {"XS": (2.53, 0.47), "S": (2.53, 1.07), "M": (7.34, 5.59), "L": (14.7, 17.7)}


# ----------------------------------------------------------------------------- grammar
@pytest.mark.parametrize(
    "genotype, error",
    [
        (gt.EVOPOSE2D, None),
        (gt.EVOPOSE2D_XS, None),
        (gt.EFFICIENTNET_B0, None),
        (gt.EVOPOSE2D[:6], "must have 7 blocks"),
        ([[3, 1, 2]] + gt.EVOPOSE2D[1:], "block 1 must be"),
        ([[4, 1, 2, 1]] + gt.EVOPOSE2D[1:], "kernel must be odd"),
        ([[3, 0, 2, 1]] + gt.EVOPOSE2D[1:], "repeats must be"),
        ([[3, 1, 0, 1]] + gt.EVOPOSE2D[1:], "filters/8 must be"),
        ([[3, 1, 2, 3]] + gt.EVOPOSE2D[1:], "stride must be 1 or 2"),
        ([[3, 1, 2, 1]] * 7, "below the head's upsampling"),
        ("not a genotype", "7 lists of 4 integers"),
    ],
)
def test_validate_table(genotype, error):
    if error is None:
        assert gt.validate(genotype) == [list(b) for b in genotype]
    else:
        with pytest.raises(gt.GenotypeError, match=error):
            gt.validate(genotype)


def test_encode_decode_round_trip():
    for g in (gt.EVOPOSE2D, gt.EVOPOSE2D_XS, gt.EFFICIENTNET_B0):
        text = gt.encode(g)
        assert gt.decode(text) == g
    assert gt.encode(gt.EVOPOSE2D).startswith("k3r1f2s1_k3r3f3s2_")
    with pytest.raises(gt.GenotypeError, match="cannot parse block"):
        gt.decode("k3r1f2s1_bogus")


def test_strides_and_scaling():
    assert gt.heatmap_stride(gt.EVOPOSE2D) == 2
    assert gt.heatmap_stride(gt.EVOPOSE2D_XS) == 4
    assert gt.scaling_parameters((256, 192)) == pytest.approx((1.0, 1.0, 0.2))
    d, w, drop = gt.scaling_parameters((384, 288))
    assert d > 1.6 and w > 1.3 and drop == 0.4


# ----------------------------------------------------------------------------- sizes
_SIZE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import keras
    from evopose_sdk.training import network
    out = {"backend": keras.backend.backend()}
    for size in ("XS", "S", "M", "L"):
        m = network.build_named(size)
        out[size] = [network.count_params(m), network.count_macs(m), list(m.output.shape[1:])]
        keras.backend.clear_session()
    print("RESULT" + json.dumps(out))
    """
)


def _sizes_under(backend: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               TF_ENABLE_ONEDNN_OPTS="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SIZE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_paper_params_and_macs(backend):
    res = _sizes_under(backend)
    assert res["backend"] == backend
    for size, (params_m, gmacs) in PAPER_SIZES.items():
        params, macs, out_shape = res[size]
        assert params / 1e6 == pytest.approx(params_m, rel=0.02), (size, params)
        assert macs / 1e9 == pytest.approx(gmacs, rel=0.02), (size, macs)
    assert res["XS"][2] == [64, 48, 17]
    assert res["S"][2] == [128, 96, 17]
    assert res["M"][2] == [192, 144, 17]
    assert res["L"][2] == [256, 192, 17]


_SEEDED_BUILD = textwrap.dedent("""
    import hashlib, keras
    from evopose_sdk.training.network import build_evopose
    keras.utils.set_random_seed(7)
    g = [[3, 1, 1, 1], [3, 1, 2, 2], [5, 1, 2, 2], [3, 1, 4, 2], [5, 1, 4, 1], [5, 1, 6, 1],
         [3, 1, 4, 1]]
    m = build_evopose(g, (64, 48), num_keypoints=17, compound_scaling=False)
    ws = m.get_weights()
    print("RESULT", hashlib.sha256(b"".join(w.tobytes() for w in ws)).hexdigest())
    # two equal-shaped kernels must not be one draw
    k = [w.numpy() for w in m.weights if w.path.endswith("kernel")]
    same = [a.shape == b.shape and (a == b).all() for i, a in enumerate(k) for b in k[i + 1:]]
    print("SAME", any(same))
""")


def test_seeded_init_is_the_same_in_every_process_and_not_shared_between_layers():
    """Same seed, two fresh processes: bitwise the same initial weights (what makes a
    killed-and-resumed or repeated training run reproducible); layers of equal shape still
    get their own draws."""
    outs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _SEEDED_BUILD], capture_output=True,
                              text=True, timeout=300,
                              env=dict(os.environ, KERAS_BACKEND="tensorflow",
                                       TF_CPP_MIN_LOG_LEVEL="3"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines()
                     if ln.startswith(("RESULT", "SAME")))
        assert lines["SAME"] == "False"
        outs.append(lines["RESULT"])
    assert outs[0] == outs[1]


# ----------------------------------------------------------------------------- forward
@pytest.fixture(scope="module")
def small_model():
    from evopose_sdk.training.network import build_evopose

    # A narrow, shallow member of the family at a small input: fast to build and run.
    g = [[3, 1, 1, 1], [3, 1, 2, 2], [5, 1, 2, 2], [3, 1, 4, 2], [5, 1, 4, 1], [5, 1, 6, 1],
         [3, 1, 4, 1]]
    return build_evopose(g, (128, 96), num_keypoints=17, compound_scaling=False)


def test_forward_finite_and_layer_names(small_model):
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 96, 3)).astype("float32")
    y = np.asarray(small_model(x, training=False))
    assert y.shape == (2, 64, 48, 17)
    assert np.all(np.isfinite(y))
    names = {layer.name for layer in small_model.layers}
    for expected in ("image", "input_normalization", "stem_conv", "stem_bn", "block1a_dwconv",
                     "block2a_expand_conv", "block2a_se_reduce", "block4a_project_bn",
                     "head_block1_conv", "head_block3_bn", "final_conv"):
        assert expected in names


def test_input_normalisation_is_imagenet(small_model):
    layer = small_model.get_layer("input_normalization")
    x = np.array([[[[123.675, 116.28, 103.53]]]], dtype="float32")  # ImageNet mean * 255
    assert np.allclose(np.asarray(layer(x)), 0.0, atol=1e-4)


def test_custom_keypoints_and_bad_input_size():
    from evopose_sdk.training.network import build_evopose

    m = build_evopose(gt.EVOPOSE2D_XS, (64, 64), num_keypoints=5, compound_scaling=False)
    assert tuple(m.output.shape[1:]) == (16, 16, 5)
    with pytest.raises(ValueError, match="divisible by the backbone stride 32"):
        build_evopose(gt.EVOPOSE2D_XS, (100, 64))


# ----------------------------------------------------------------------------- H5
@pytest.mark.parametrize("full_model", [True, False])
def test_load_authors_h5_layout(small_model, tmp_path, full_model):
    import h5py

    from evopose_sdk.training.legacy_h5 import load_h5_weights, save_h5_legacy
    from evopose_sdk.training.network import build_evopose

    src = small_model
    path = tmp_path / "evopose2d_test_f32.h5"
    save_h5_legacy(src, path, full_model=full_model)
    with h5py.File(path, "r") as f:  # the legacy layout, as TF 2.3 wrote it
        root = f["model_weights"] if full_model else f
        assert "stem_conv/kernel:0" in root["stem_conv"]
        assert b"stem_conv" in list(root.attrs["layer_names"])

    g = [[3, 1, 1, 1], [3, 1, 2, 2], [5, 1, 2, 2], [3, 1, 4, 2], [5, 1, 4, 1], [5, 1, 6, 1],
         [3, 1, 4, 1]]
    dst = build_evopose(g, (128, 96), compound_scaling=False)
    report = load_h5_weights(dst, path)
    assert not report.missing and not report.mismatched
    x = np.random.default_rng(1).uniform(0, 255, (1, 128, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(dst(x)), np.asarray(src(x)), atol=1e-5)


def test_h5_mismatch_lists_layers(small_model, tmp_path):
    from evopose_sdk.training.legacy_h5 import CheckpointError, load_h5_weights, save_h5_legacy
    from evopose_sdk.training.network import build_evopose

    path = tmp_path / "w.h5"
    save_h5_legacy(small_model, path)
    # Wider first stage and one more repeat in stage 7: mismatched shapes and a missing layer.
    g = [[3, 1, 2, 1], [3, 1, 2, 2], [5, 1, 2, 2], [3, 1, 4, 2], [5, 1, 4, 1], [5, 1, 6, 1],
         [3, 2, 4, 1]]
    other = build_evopose(g, (128, 96), compound_scaling=False)
    with pytest.raises(CheckpointError) as err:
        load_h5_weights(other, path)
    msg = str(err.value)
    assert "missing in file: " in msg and "block7b_" in msg
    assert "shape mismatch: " in msg and "block1a_project_conv" in msg
    report = load_h5_weights(other, path, strict=False)
    assert "stem_conv" in report.loaded and "block7b_expand_conv" in report.missing


@pytest.mark.parametrize("content, error", [
    (None, "checkpoint not found"),
    (b"not hdf5 at all", "is not an HDF5 file"),
])
def test_h5_bad_files(tmp_path, small_model, content, error):
    from evopose_sdk.training.legacy_h5 import CheckpointError, load_h5_weights

    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=error):
        load_h5_weights(small_model, path)
