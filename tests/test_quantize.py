"""Int8 activation ranges (training.int8_ranges), FakeQuant, quantisation-aware training, and the
export's least-error int8 calibration.

The range rule is checked on heavy-tailed values shaped like the conv + batch-norm outputs
that broke post-training int8 of EvoPose2D-S (most channels within +-10, a few at +-100);
FakeQuant against the same uint8 round trip the export uses; the QAT wrapper on a real
network over real person crops; a QAT training run on real COCO people end to end.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from _runtime_helpers import N_CALIB, N_PARITY, SMALL_HW, XS_GENOTYPE, person_crops
from _training_helpers import DATA_ROOT, require_data

from evopose_sdk.training import config as cfgmod
from evopose_sdk.training import quantize as Q
from evopose_sdk.training.int8_ranges import mse_range, quant_dequant, swish
from evopose_sdk.training.network import build_evopose
from evopose_sdk.training.rundir import load_checkpoint, read_loss_curve
from evopose_sdk.training.train import train


def _heavy_tailed(seed=0):
    """Student-t (3 dof) x 2: most values within +-10, a tail out to +-100 or more."""
    return np.random.default_rng(seed).standard_t(3, 200_000) * 2.0


def test_mse_range_beats_minmax_on_heavy_tails():
    v = _heavy_tailed()
    lo, hi = mse_range(v)
    assert v.min() < lo <= 0 <= hi < v.max() and hi - lo < 0.9 * (v.max() - v.min())
    err_minmax = np.mean((quant_dequant(v, v.min(), v.max()) - v) ** 2)
    err_mse = np.mean((quant_dequant(v, lo, hi) - v) ** 2)
    assert err_mse < 0.8 * err_minmax


def test_mse_range_measured_after_swish_clips_the_negative_tail():
    v = _heavy_tailed(1)
    lo_plain, _ = mse_range(v)
    lo_swish, hi_swish = mse_range(v, feeds_swish=True)
    assert lo_swish > 0.5 * lo_plain  # swish(x) ~ 0 for x << 0: those values need no levels
    ref = swish(v)
    err = np.mean((swish(quant_dequant(v, lo_swish, hi_swish)) - ref) ** 2)
    assert err < 0.5 * np.mean((swish(quant_dequant(v, v.min(), v.max())) - ref) ** 2)


def test_fake_quant_is_the_exports_uint8_round_trip_with_straight_through_gradient():
    layer = Q.FakeQuant(-3.1, 7.3)
    x = tf.constant(np.linspace(-6, 10, 4001, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
    grad = tape.gradient(y, x).numpy()
    y = y.numpy()
    d = np.abs(y - quant_dequant(x.numpy(), -3.1, 7.3))
    assert (d > 1e-4).mean() < 0.002 and d.max() <= layer.scale + 1e-5  # float32 ties only
    assert len(np.unique(np.round(y, 5))) <= 256
    assert float(layer(tf.zeros(1))[0]) == 0.0  # zero is a level, as in TFLite
    inside = (x.numpy() > layer._lo + 1e-3) & (x.numpy() < layer._hi - 1e-3)
    outside = (x.numpy() < layer._lo - 1e-3) | (x.numpy() > layer._hi + 1e-3)
    assert np.all(grad[inside] == 1.0) and np.all(grad[outside] == 0.0)
    assert Q.FakeQuant.from_config(layer.get_config()).hi == layer.hi


@pytest.fixture(scope="module")
def small_net():
    from evopose_sdk.training.genotype import decode

    keras.utils.set_random_seed(0)
    model = build_evopose(decode(XS_GENOTYPE), SMALL_HW, 17)
    crops = person_crops(SMALL_HW, 24).images
    return model, crops


def test_quantize_aware_wraps_every_int8_tensor_and_strips_back(small_net, tmp_path):
    model, crops = small_net
    ranges = Q.activation_ranges(model, crops[:16])
    quantised = [layer.name for layer in model.layers if Q._quantised(layer)]
    assert sorted(ranges) == sorted(quantised)
    assert any(name.endswith("expand_bn") for name in ranges)
    assert "final_conv" in ranges and "stem_activation" in ranges
    qat = Q.quantize_aware(model, ranges, freeze_batch_norm=False)
    fq = [layer for layer in qat.layers if isinstance(layer, Q.FakeQuant)]
    assert len(fq) == len(ranges) and Q.has_fake_quant(qat)
    x = crops[16:]
    ref = np.asarray(model(x, training=False))
    out = np.asarray(qat(x, training=False))
    diff = np.abs(out - ref).max() / (ref.max() - ref.min())
    assert 0 < diff < 0.5  # int8 noise, not a different network
    path = tmp_path / "qat.keras"
    qat.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), out, atol=1e-6)
    plain = Q.strip_fake_quant(again)
    assert not Q.has_fake_quant(plain) and len(plain.layers) == len(model.layers)
    np.testing.assert_allclose(np.asarray(plain(x, training=False)), ref, atol=1e-5)


def test_qat_training_run_resumes_and_ends_with_the_plain_network(tmp_path):
    require_data("coco128")
    out = tmp_path / "qat"
    cfg = cfgmod.load_config("xs", [
        f"data.root={DATA_ROOT}", 'data.sources=["coco128"]', "model.input_hw=[128,96]",
        "train.batch_size=4", "train.epochs=1", "train.lr=1e-4", "data.workers=0",
        "train.progress=false", "train.log_every_steps=1", "quantize.aware=true",
        f"output.dir={out}"])
    ckpt = train({**cfg, "train": {**cfg["train"], "max_steps": 3}})
    wrapped = load_checkpoint(ckpt)
    assert Q.has_fake_quant(wrapped)
    bn = [layer for layer in wrapped.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and not any(layer.trainable for layer in bn)  # frozen while fake-quantised
    ranges = json.loads((out / "fake_quant_ranges.json").read_text())
    assert len(ranges) == sum(isinstance(layer, Q.FakeQuant) for layer in wrapped.layers)
    final = train(cfg, resume="must")
    assert final.name == "final.keras"
    steps, loss = read_loss_curve(out)
    assert steps.tolist() == list(range(1, len(steps) + 1)) and np.all(np.isfinite(loss))
    plain = keras.saving.load_model(final, compile=False)
    assert not Q.has_fake_quant(plain)
    from evopose_sdk.export.source import load_source

    assert not Q.has_fake_quant(load_source(ckpt).model)  # export strips a QAT checkpoint


def test_int8_export_minmax_and_mse_calibration(small_net, tmp_path):
    """Both range rules give working uint8-input files; the card records which one was used."""
    from ai_edge_litert.interpreter import Interpreter

    from evopose_sdk.card import ModelCard
    from evopose_sdk.export import export_model
    from evopose_sdk.export.crops import CropSet

    model, crops = small_net
    path = tmp_path / "small.keras"
    model.save(path)
    n = N_PARITY // 2 + N_CALIB // 2
    cs = CropSet(crops[:n], [f"crop {i}" for i in range(n)], "bus.jpg/zidane.jpg")
    scales = {}
    for rule in ("minmax", "mse"):
        res = export_model(path, tmp_path / rule, formats="tflite-int8", crops=cs,
                           n_parity=N_PARITY // 2, n_calib=N_CALIB // 2, calibration=rule)
        f = res["tflite-int8"]
        card = ModelCard.load(f.card_path)
        assert card.recipe["export"]["calibration"]["ranges"] == rule
        it = Interpreter(model_path=str(f.path))
        assert it.get_input_details()[0]["dtype"] == np.uint8
        scales[rule] = {d["name"]: d["quantization"][0] for d in it.get_tensor_details()
                        if d["dtype"] == np.int8 and d["quantization"][0] > 0}
    # same graph, tensor by tensor: least-error ranges are never wider than min/max (weights
    # are equal), and a good share of the activations are clipped
    common = sorted(set(scales["mse"]) & set(scales["minmax"]))
    assert len(common) > 0.9 * len(scales["minmax"])
    ratio = np.array([scales["mse"][k] / scales["minmax"][k] for k in common])
    print(f"{len(common)} int8 tensors, {np.mean(ratio < 0.99):.2f} narrower, max ratio {ratio.max():.4f}")
    assert ratio.max() <= 1.001
    assert np.mean(ratio < 0.99) > 0.2
