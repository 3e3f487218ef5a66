"""Export stage: Keras -> ONNX / TFLite fp32 / fp16 / int8, cards, parity. Other sources, bad
input, the CLI and the YOLO detector: test_export_inputs.py.

The S model (256x192, the issue's target) is built once per session and exported to all four
formats in one module fixture; checks then read the written files with onnxruntime and
ai_edge_litert. Crops are real people: the hand-chosen boxes of ``.samples/bus.jpg`` and
``.samples/zidane.jpg`` (CI fetches both). Random weights give near-flat heatmaps, so parity is
judged on heatmap differences relative to the heatmap range (see export/parity.py).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import onnxruntime as ort  # noqa: E402
from _runtime_helpers import (  # noqa: E402
    N_CALIB,
    N_PARITY,
    PERSON_BOXES,
    keras_output,
    person_crops,
    sample,
)

from evopose_sdk.card import (  # noqa: E402
    ONNX_METADATA_KEY,
    ModelCard,
    card_path_for,
    sha256_file,
    verify_sha256,
)
from evopose_sdk.export import ExportError, export_model  # noqa: E402


@pytest.fixture(scope="module")
def s_export(tmp_path_factory):
    """S built once (random weights), saved as .keras, exported to all four formats."""
    from evopose_sdk.training.network import build_named

    crops = person_crops((256, 192), N_PARITY + N_CALIB)
    root = tmp_path_factory.mktemp("export_s")
    model = build_named("S")
    ckpt = root / "evopose2d_s.keras"
    model.save(ckpt)
    result = export_model(ckpt, root / "out", crops=crops, n_parity=N_PARITY, n_calib=N_CALIB,
                          trained=False, training_data="none (random weights, test)")
    return {"model": model, "result": result, "crops": crops, "checkpoint": ckpt}


# ---------------------------------------------------------------- ONNX


def test_onnx_contract_and_batches(s_export):
    f = s_export["result"]["onnx"]
    sess = ort.InferenceSession(str(f.path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("image", "tensor(float)", [256, 192, 3])
    assert isinstance(inp.shape[0], str), "batch must be dynamic"
    assert (out.name, out.type, out.shape[1:]) == ("heatmaps", "tensor(float)", [128, 96, 17])
    crops = s_export["crops"].images[:8]
    ref = keras_output(s_export["model"], crops)
    rng = float(ref.max() - ref.min())
    y8 = sess.run(None, {"image": crops})[0]
    y1 = sess.run(None, {"image": crops[:1]})[0]
    assert y8.shape == (8, 128, 96, 17) and y1.shape == (1, 128, 96, 17)
    assert np.abs(y8 - ref).max() <= 1e-4 * rng
    assert np.abs(y1[0] - ref[0]).max() <= 1e-4 * rng
    assert np.all(np.isfinite(y8))


def test_onnx_runs_in_opencv_dnn(s_export):
    """tf2onnx's ConvTransposes have asymmetric pads, which cv2.dnn refuses; the export makes
    them symmetric (+ Slice), so OpenCV DNN runs the file and matches the Keras model."""
    import cv2
    import onnx

    from evopose_sdk.export.portable import CARD_NOTE, asymmetric_conv_transposes

    f = s_export["result"]["onnx"]
    proto = onnx.load(str(f.path))
    assert sum(n.op_type == "ConvTranspose" for n in proto.graph.node) == 3
    assert asymmetric_conv_transposes(proto) == []
    assert f.card.recipe["export"]["conv_transpose"] == CARD_NOTE
    crops = s_export["crops"].images[:4]
    ref = keras_output(s_export["model"], crops)
    net = cv2.dnn.readNetFromONNX(str(f.path))
    net.setInput(crops, "image")
    got = net.forward("heatmaps")
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 1e-4 * float(ref.max() - ref.min())


def test_onnx_card_embedded_and_sha(s_export):
    import onnx

    f = s_export["result"]["onnx"]
    meta = {p.key: p.value for p in onnx.load(str(f.path)).metadata_props}
    embedded = json.loads(meta[ONNX_METADATA_KEY])
    on_disk = json.loads(card_path_for(f.path).read_text())
    assert embedded["sha256"] == ""
    assert on_disk["sha256"] == sha256_file(f.path)
    assert {**embedded, "sha256": ""} == {**on_disk, "sha256": ""}
    card = ModelCard.load(card_path_for(f.path))
    verify_sha256(card, f.path)
    from evopose_sdk.training.genotype import EVOPOSE2D

    assert (card.name, card.input_size, card.heatmap_stride) == ("evopose2d-s", (256, 192), 2)
    assert card.genotype == EVOPOSE2D
    assert (card.file_format, card.precision, card.trained) == ("onnx", "fp32", False)
    assert card.num_keypoints == 17 and len(card.flip_pairs) == 8 and len(card.skeleton) > 10
    assert card.metrics["parity"]["n_crops"] == N_PARITY


# ---------------------------------------------------------------- parity reports, all formats

#: (format, max |diff| / heatmap range, mean |diff| / range) bounds on random-weight S.
PARITY_BOUNDS = [
    ("onnx", 1e-4, 1e-5),
    ("tflite-fp32", 1e-4, 1e-5),
    ("tflite-fp16", 1e-2, 1e-3),
    ("tflite-int8", 0.25, 0.03),
]


def test_update_card_after_measuring(s_export, tmp_path):
    """Figures measured after export land in the sidecar and the embedded card; sha stays valid."""
    import onnx

    from evopose_sdk.export import update_card

    f = s_export["result"]["onnx"]
    path = tmp_path / f.path.name
    shutil.copyfile(f.path, path)
    shutil.copyfile(card_path_for(f.path), card_path_for(path))
    card = update_card(path, {"dev_val": {"AP": 0.5}}, training_data="test data")
    assert card.metrics["dev_val"] == {"AP": 0.5} and "parity" in card.metrics
    verify_sha256(ModelCard.load(card_path_for(path)), path)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    embedded = json.loads(meta[ONNX_METADATA_KEY])
    assert embedded["metrics"]["dev_val"] == {"AP": 0.5}
    assert embedded["training_data"] == "test data" and embedded["sha256"] == ""
    with pytest.raises(ExportError, match="unknown card fields: bogus"):
        update_card(path, bogus=1)


@pytest.mark.parametrize("fmt,max_rel,mean_rel", PARITY_BOUNDS)
def test_parity_report(s_export, fmt, max_rel, mean_rel):
    f = s_export["result"][fmt]
    report = json.loads(f.parity_path.read_text())
    assert f.parity_path.name == f.path.name + ".parity.json"
    hm, kp = report["heatmap"], report["keypoints_px"]
    assert report["crops"]["n"] == N_PARITY and report["crops"]["real"] is True
    assert hm["ref_range"] > 0
    assert hm["max_abs_diff_rel_range"] <= max_rel, hm
    assert hm["mean_abs_diff"] / hm["ref_range"] <= mean_rel, hm
    assert 0 <= kp["mean"] <= kp["max"]
    card = ModelCard.load(f.card_path)
    assert card.metrics["parity"]["heatmap_max_abs_diff"] == hm["max_abs_diff"]
    assert card.metrics["parity"]["keypoint_mean_px"] == kp["mean"]
    verify_sha256(card, f.path)
    if fmt in ("onnx", "tflite-fp32"):  # exact formats agree on the decoded peaks too
        assert kp["mean"] < 0.5 and hm["max_abs_diff"] < 1e-5
    if fmt == "tflite-int8":
        assert "uint8" in report["io"]["input"] and "float32" in report["io"]["output"]
        assert card.recipe["export"]["calibration"]["n_crops"] == N_CALIB
        assert card.recipe["export"]["calibration"]["disjoint_from_parity"] is True


@pytest.mark.parametrize("precision,in_dtype,max_rel", [
    ("fp32", np.float32, 1e-4), ("fp16", np.float32, 1e-2), ("int8", np.uint8, 0.25)])
def test_tflite_runs_in_litert(s_export, precision, in_dtype, max_rel):
    from ai_edge_litert.interpreter import Interpreter

    f = s_export["result"][f"tflite-{precision}"]
    card = ModelCard.load(f.card_path)
    assert (card.file_format, card.precision) == ("tflite", precision)
    it = Interpreter(model_path=str(f.path))
    it.allocate_tensors()
    (i,), (o,) = it.get_input_details(), it.get_output_details()
    assert i["dtype"] == in_dtype and list(i["shape"]) == [1, 256, 192, 3]
    assert o["dtype"] == np.float32 and list(o["shape"]) == [1, 128, 96, 17]
    x = s_export["crops"].images[N_PARITY - 1:N_PARITY]
    if in_dtype == np.uint8:
        scale, zero = i["quantization"]
        assert 0.5 < scale < 1.5, "0-255 RGB should quantise at ~1 per step"
        xq = np.clip(np.round(x / scale + zero), 0, 255).astype(np.uint8)
    else:
        xq = x
    it.set_tensor(i["index"], xq)
    it.invoke()
    y = it.get_tensor(o["index"])
    ref = keras_output(s_export["model"], x)
    assert np.abs(y - ref).max() <= max_rel * float(ref.max() - ref.min())


def test_exported_files_run_in_the_runtime(s_export):
    """The runtime SDK resolves each exported file by path, checks its card, and estimates."""
    from evopose_sdk.estimator import PoseEstimator

    for fmt, backend in (("onnx", "onnxruntime"), ("tflite-int8", "tflite")):
        f = s_export["result"][fmt]
        est = PoseEstimator(model=str(f.path), backend=backend, detector="none",
                            flip_test=False)
        res = est.estimate_boxes(str(sample("bus.jpg")), PERSON_BOXES["bus.jpg"])
        assert len(res) == 4 and np.all(np.isfinite(res.keypoints))
