"""Helpers for the runtime tests: tiny ONNX graphs built with onnx.helper, sample paths,
and a random-weight pose model made by the export stage.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from evopose_sdk.card import ModelCard, card_path_for, sha256_file
from evopose_sdk.skeleton import COCO_FLIP_PAIRS

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / ".samples"


def sample(name: str) -> Path:
    """Path of a sample file in .samples/; the test fails naming the fetch command when it is
    missing (the README's test command and CI fetch every sample first)."""
    p = SAMPLES / name
    if not p.is_file():
        pytest.fail(f"{p} missing: run `python tools/fetch_samples.py`", pytrace=False)
    return p


#: Person boxes (x1, y1, x2, y2) of .samples/bus.jpg as the runtime tests pass them.
BUS_BOXES = np.array([[52, 392, 229, 900], [230, 409, 352, 878], [678, 363, 810, 882],
                      [0, 550, 70, 880]], np.float32)

#: Hand-chosen person boxes (x1, y1, x2, y2) in the sample photos (export crops).
PERSON_BOXES = {
    "bus.jpg": [[50, 400, 245, 905], [215, 405, 345, 860], [670, 380, 810, 875],
                [0, 550, 65, 870]],
    "zidane.jpg": [[745, 40, 1140, 712], [120, 190, 715, 715]],
}


#: The XS genotype (S with stride 2 in stage 6) and the small input the export and quantisation
#: tests build it at; crops of the parity check and of int8 calibration.
XS_GENOTYPE = "k3r1f2s1_k3r3f3s2_k5r2f5s2_k3r4f10s2_k5r2f14s1_k5r4f16s2_k3r2f10s1"
SMALL_HW = (128, 96)
N_PARITY, N_CALIB = 16, 24


def person_crops(input_hw, n):
    """``n`` export calibration / parity crops of the people in :data:`PERSON_BOXES`."""
    from evopose_sdk.export import crops_from_boxes

    return crops_from_boxes([(sample(k), v) for k, v in PERSON_BOXES.items()], input_hw, n,
                            description="bus.jpg/zidane.jpg hand-chosen boxes")


def keras_output(model, x):
    """A Keras model's output on ``x`` (inference mode) as a float32 array."""
    return np.asarray(model(x, training=False), np.float32)


def save_onnx_with_card(model, path: Path, card: ModelCard) -> Path:
    """Write an ONNX model and its sha256-checked card next to it."""
    import onnx

    onnx.save(model, str(path))
    card.sha256 = sha256_file(path)
    card.save(card_path_for(path))
    return path


def make_mirror_model(path: Path, input_hw: tuple[int, int] = (64, 48), stride: int = 4,
                      symmetric: bool = True, seed: int = 0) -> Path:
    """A tiny pose 'network' that is exactly mirror-symmetric when ``symmetric``.

    heatmaps[..., k] = AveragePool_s(sigmoid(conv1x1_k(image))) * mask_k, where left/right
    keypoints share the 1x1 conv weights and have horizontally mirrored masks (unpaired
    keypoints get a mask symmetric about the centre column). Then
    model(flip(x)) == flip_back(model(x)) exactly, so flip test must not move keypoints.
    With ``symmetric=False`` the masks of pairs are not mirrored (a control).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    k = 17
    h, w = input_hw
    hh, ww = h // stride, w // stride
    weights = rng.normal(0, 3.0 / 255.0, (k, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(0, 0.5, (k,)).astype(np.float32)
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float64)
    masks = np.zeros((hh, ww, k), np.float64)
    left = {a for a, _ in COCO_FLIP_PAIRS}
    partner = {a: b for a, b in COCO_FLIP_PAIRS}
    sigma = max(hh, ww) / 6.0

    def gauss(cx: float, cy: float) -> np.ndarray:
        return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))

    for j in range(k):
        cy = rng.uniform(0.2, 0.8) * (hh - 1)
        if j in left:
            cx = rng.uniform(0.1, 0.4) * (ww - 1)
            masks[..., j] = gauss(cx, cy)
            r = partner[j]
            weights[r], bias[r] = weights[j], bias[j]
            masks[..., r] = gauss((ww - 1) - cx, cy) if symmetric else gauss(cx + 0.37 * ww, cy)
        elif j not in partner.values():
            masks[..., j] = gauss((ww - 1) / 2.0, cy)
    nodes = [
        helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w", "b"], ["feat"]),
        helper.make_node("Sigmoid", ["feat"], ["act"]),
        helper.make_node("AveragePool", ["act"], ["pooled"], kernel_shape=[stride, stride],
                         strides=[stride, stride]),
        helper.make_node("Transpose", ["pooled"], ["nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["nhwc", "mask"], ["heatmaps"]),
    ]
    graph = helper.make_graph(
        nodes, "mirror_pose",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, 3])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", hh, ww, k])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b"),
                     numpy_helper.from_array(masks[None].astype(np.float32), "mask")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    card = ModelCard(name=f"mirror-s{stride}", input_size=input_hw, heatmap_stride=stride,
                     trained=False)
    return save_onnx_with_card(model, path, card)


def make_constant_output_model(path: Path, input_shape: list, output: np.ndarray,
                               input_name: str = "images", output_name: str = "output0") -> Path:
    """An ONNX graph whose output is a fixed tensor (plus 0 x the input, so it is used).

    Used as a stand-in with the exact I/O layout of an ultralytics YOLO export, and as an
    ONNX file that is not a pose model.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], [output_name]),
        helper.make_node("Identity", [input_name], ["x"]),
    ]
    nodes = [nodes[3], *nodes[:3]]
    graph = helper.make_graph(
        nodes, "constant",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output.shape))],
        initializer=[numpy_helper.from_array(output.astype(np.float32), "const"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def export_api():
    """The export stage's ``export_model`` (extra ``[export]``, which the tests need)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return importlib.import_module("evopose_sdk.export").export_model


def export_random_model(out_dir: Path, size: str, formats: tuple[str, ...]) -> dict[str, Path]:
    """Random-weight model of ``size`` exported by evopose_sdk.export -> {format: path}.

    Formats as the export stage names them (``"onnx"``, ``"tflite-fp32"``, ``"tflite-int8"``);
    int8 is calibrated on crops of the sample photos.
    """
    fn = export_api()
    out_dir = Path(out_dir)
    calib = out_dir / "calib"
    calib.mkdir(parents=True, exist_ok=True)
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(sample(name), calib / name)
    result = fn(None, out_dir, formats=",".join(formats), size=size,
                calib_images=calib,
                n_parity=2, n_calib=4)
    return {fmt: Path(f.path) for fmt, f in result.files.items()}
