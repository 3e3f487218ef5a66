"""Export stage: Keras -> ONNX / TFLite fp32 / fp16 / int8, cards, parity, CLI, YOLO detector.

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
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import onnxruntime as ort  # noqa: E402
from _runtime_helpers import sample  # noqa: E402
from _training_helpers import require_data  # noqa: E402

from evopose_sdk.card import (  # noqa: E402
    ONNX_METADATA_KEY,
    ModelCard,
    card_path_for,
    sha256_file,
    verify_sha256,
)
from evopose_sdk.export import ExportError, crops_from_boxes, export_model  # noqa: E402
from evopose_sdk.export.source import load_source  # noqa: E402

#: Hand-chosen person boxes (x1, y1, x2, y2) in the sample photos.
PERSON_BOXES = {
    "bus.jpg": [[50, 400, 245, 905], [215, 405, 345, 860], [670, 380, 810, 875],
                [0, 550, 65, 870]],
    "zidane.jpg": [[745, 40, 1140, 712], [120, 190, 715, 715]],
}
XS_GENOTYPE = "k3r1f2s1_k3r3f3s2_k5r2f5s2_k3r4f10s2_k5r2f14s1_k5r4f16s2_k3r2f10s1"
SMALL_HW = (128, 96)
N_PARITY, N_CALIB = 16, 24
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _sample_crops(input_hw, n):
    return crops_from_boxes([(sample(k), v) for k, v in PERSON_BOXES.items()], input_hw, n,
                            description="bus.jpg/zidane.jpg hand-chosen boxes")


def _keras(model, x):
    return np.asarray(model(x, training=False), np.float32)


def _cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "evopose_sdk.export.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def s_export(tmp_path_factory):
    """S built once (random weights), saved as .keras, exported to all four formats."""
    from evopose_sdk.training.network import build_named

    crops = _sample_crops((256, 192), N_PARITY + N_CALIB)
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
    ref = _keras(s_export["model"], crops)
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
    ref = _keras(s_export["model"], crops)
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
    ref = _keras(s_export["model"], x)
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


# ---------------------------------------------------------------- other inputs


def test_legacy_h5_loads_by_layer_name(tmp_path):
    from evopose_sdk.training import legacy_h5 as ckpt
    from evopose_sdk.training.genotype import decode
    from evopose_sdk.training.network import build_evopose

    src = build_evopose(decode(XS_GENOTYPE), SMALL_HW)
    path = tmp_path / "evopose2d_custom_f32.h5"
    ckpt.save_h5_legacy(src, path)
    crops = _sample_crops(SMALL_HW, 4)
    res = export_model(path, tmp_path / "out", formats="onnx", genotype=XS_GENOTYPE,
                       input_size="128x96", crops=crops, n_parity=4)
    f = res["onnx"]
    sess = ort.InferenceSession(str(f.path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"image": crops.images})[0]
    ref = _keras(src, crops.images)
    assert y.shape == (4, 32, 24, 17)
    assert np.abs(y - ref).max() <= 1e-4 * float(ref.max() - ref.min())
    card = ModelCard.load(f.card_path)
    assert card.trained is True and card.heatmap_stride == 4 and card.input_size == SMALL_HW


def test_h5_size_from_file_name_and_unknown_name(tmp_path):
    bad = tmp_path / "weights.h5"
    bad.write_bytes(b"not really h5")
    with pytest.raises(ExportError, match="cannot tell the model size"):
        load_source(bad)


def test_calibration_crops_from_shared_coco_data():
    ann = require_data("coco128") / "coco128" / "annotations.json"
    from evopose_sdk.export import crops_from_coco

    a = crops_from_coco([ann], (256, 192), 20)
    b = crops_from_coco([ann], (256, 192), 20)
    assert a.images.shape == (20, 256, 192, 3) and a.images.dtype == np.float32
    assert np.array_equal(a.images, b.images), "crop selection must be deterministic"
    assert 0 <= a.images.min() and a.images.max() <= 255 and a.images.std() > 20
    assert len(set(a.sources)) == 20


# ---------------------------------------------------------------- bad input


def test_keras_file_that_is_not_a_pose_model(tmp_path):
    from evopose_sdk.export._backend import keras

    inp = keras.Input((8,), name="x")
    m = keras.Model(inp, keras.layers.Dense(3)(inp))
    path = tmp_path / "classifier.keras"
    m.save(path)
    with pytest.raises(ExportError, match="not a pose model"):
        export_model(path, tmp_path / "out", formats="onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b"\x00garbage" * 10), "cannot load Keras model"),
    (lambda p: None, "checkpoint not found"),
])
def test_bad_checkpoint_files(tmp_path, make, match):
    path = tmp_path / "model.keras"
    make(path)
    with pytest.raises(ExportError, match=match):
        export_model(path, tmp_path / "out", formats="onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"opset": 19}, "opset 19 is not supported"),
    ({"opset": 12}, "opset 12 is not supported"),
    ({"formats": "onxx"}, "did you mean 'onnx'"),
    ({"formats": "tflite-int8"}, "int8 TFLite needs real person crops"),
    ({"calib_data": ["/nonexistent/annotations.json"]}, "calibration annotations not found"),
    ({"calib_images": "/nonexistent/dir"}, "calibration image folder not found"),
    ({"genotype": "k3r1"}, "invalid genotype"),
])
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ExportError, match=match):
        export_model(None, tmp_path / "out", **{"size": "S", **kwargs})
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- CLI


def test_cli_help():
    r = _cli("--help")
    assert r.returncode == 0
    for word in ("--calib-data", "--calib-images", "--opset", "--formats", "yolo"):
        assert word in r.stdout
    r = _cli("yolo", "--help")
    assert r.returncode == 0 and "--imgsz" in r.stdout
    script = shutil.which("evopose-export")
    if script:  # the console script declared in pyproject
        r = subprocess.run([script, "--help"], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0 and "--calib-data" in r.stdout


def test_cli_unknown_option_suggests(tmp_path):
    r = _cli("--size", "S", "--calib-dat", "x.json", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert "did you mean --calib-data?" in r.stderr
    r = _cli("--formts", "onnx")
    assert r.returncode == 2 and "did you mean --formats?" in r.stderr
    r = _cli("--size", "S", "--metrics", "[1]")  # a bad option value is a usage error too
    assert r.returncode == 2 and "--metrics must be a JSON object" in r.stderr


def test_cli_missing_input_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = _cli(tmp_path / "missing.keras", "--out", out)
    assert r.returncode == 1
    assert "checkpoint not found" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    r = _cli("--size", "S", "--opset", "19", "--out", out)
    assert r.returncode == 1 and "opset 19" in r.stderr and not out.exists()


def test_cli_export_run(tmp_path):
    """A small genotype at 128x96 through the console entry, int8 calibrated on real photos."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PERSON_BOXES:
        (photos / name).write_bytes(sample(name).read_bytes())
    out = tmp_path / "out"
    r = _cli("--genotype", XS_GENOTYPE, "--input-size", "128x96", "--formats",
             "onnx,tflite-int8", "--calib-images", photos, "--n-parity", 6, "--n-calib", 6,
             "--out", out, "--stem", "tiny", "--json", "-q")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)
    assert [row["format"] for row in rows] == ["onnx", "tflite-int8"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["tiny.onnx", "tiny.onnx.json", "tiny.onnx.parity.json", "tiny_int8.tflite",
                     "tiny_int8.tflite.json", "tiny_int8.tflite.parity.json"]
    card = ModelCard.load(out / "tiny.onnx.json")
    assert card.trained is False and card.input_size == SMALL_HW and card.heatmap_stride == 4
    verify_sha256(card, out / "tiny.onnx")
    report = json.loads((out / "tiny_int8.tflite.parity.json").read_text())
    assert "whole-image/centre crops" in report["crops"]["description"]


# ---------------------------------------------------------------- YOLO detector


def test_yolo_detector_export(tmp_path):
    from evopose_sdk.export.yolo import yolo_available

    problem = yolo_available()
    if problem:
        pytest.skip(problem)
    out = tmp_path / "det" / "yolo11n.onnx"
    r = _cli("yolo", "--model", "yolo11n.yaml", "--imgsz", 320, "--out", out, "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det"], "nothing left in the cwd"
    card = json.loads((out.parent / "yolo11n.onnx.detector.json").read_text())
    assert card["output"]["shape"] == [1, 84, 2100] and card["trained"] is False
    assert card["sha256"] == sha256_file(out)
    code = ("import sys, numpy as np, onnxruntime as ort\n"
            f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
            "y = s.run(None, {'images': np.random.rand(1, 3, 320, 320).astype(np.float32)})[0]\n"
            "assert 'torch' not in sys.modules\n"
            "print(y.shape)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and r.stdout.strip() == "(1, 84, 2100)", r.stderr


def test_yolo_missing_weights_is_clear(tmp_path):
    from evopose_sdk.export.yolo import export_yolo

    with pytest.raises(ExportError, match="YOLO weights not found"):
        export_yolo(tmp_path / "yolo11n.pt", tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="multiple of 32"):
        export_yolo("yolo11n.yaml", tmp_path / "x.onnx", imgsz=100)
