"""Export stage from other sources and with bad input: a legacy .h5 by layer name, calibration
crops from COCO data, files and options that are refused; the ``evopose-export`` CLI in a
subprocess and the YOLO detector export."""

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
from _runtime_helpers import (  # noqa: E402
    PERSON_BOXES,
    SMALL_HW,
    XS_GENOTYPE,
    keras_output,
    person_crops,
    sample,
)
from _training_helpers import require_data  # noqa: E402

from evopose_sdk.card import ModelCard, sha256_file, verify_sha256  # noqa: E402
from evopose_sdk.export import ExportError, export_model  # noqa: E402
from evopose_sdk.export.source import load_source  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def _cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "evopose_sdk.export.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, cwd=cwd, timeout=timeout)


# ---------------------------------------------------------------- other inputs


def test_legacy_h5_loads_by_layer_name(tmp_path):
    from evopose_sdk.training import legacy_h5 as ckpt
    from evopose_sdk.training.genotype import decode
    from evopose_sdk.training.network import build_evopose

    src = build_evopose(decode(XS_GENOTYPE), SMALL_HW)
    path = tmp_path / "evopose2d_custom_f32.h5"
    ckpt.save_h5_legacy(src, path)
    crops = person_crops(SMALL_HW, 4)
    res = export_model(path, tmp_path / "out", formats="onnx", genotype=XS_GENOTYPE,
                       input_size="128x96", crops=crops, n_parity=4)
    f = res["onnx"]
    sess = ort.InferenceSession(str(f.path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"image": crops.images})[0]
    ref = keras_output(src, crops.images)
    assert y.shape == (4, 32, 24, 17)
    assert np.abs(y - ref).max() <= 1e-4 * float(ref.max() - ref.min())
    card = ModelCard.load(f.card_path)
    assert card.trained is True and card.heatmap_stride == 4 and card.input_size == SMALL_HW


def test_genotype_read_back_with_and_without_compound_scaling():
    """The card's genotype is read from the layers whether the network was built with compound
    scaling at its input size or without it (the fast model: S at 160x128 as trained)."""
    from evopose_sdk.export.source import infer_genotype
    from evopose_sdk.training.genotype import EVOPOSE2D, decode
    from evopose_sdk.training.network import build_evopose

    for scaled in (False, True):
        model = build_evopose(EVOPOSE2D, (160, 128), compound_scaling=scaled)
        assert infer_genotype(model, (160, 128)) == EVOPOSE2D, scaled
    xs = build_evopose(decode(XS_GENOTYPE), (160, 128), compound_scaling=False)
    assert infer_genotype(xs, (160, 128)) == decode(XS_GENOTYPE)


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
