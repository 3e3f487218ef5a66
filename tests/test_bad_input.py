"""Bad input gives a clear error naming the problem, or an empty result (never a deep
traceback). One table of cases with an expected-exception column."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from _runtime_helpers import make_constant_output_model, make_mirror_model, sample

from evopose_sdk import PoseEstimator, PoseResult
from evopose_sdk.card import ModelCard, card_path_for, sha256_file
from evopose_sdk.errors import DetectorError, InputError, ModelError


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("bad_input")
    model = make_mirror_model(d / "pose.onnx", (64, 48), 4)
    est = PoseEstimator(model)  # default SSD detector
    bus_bytes = sample("bus.jpg").read_bytes()
    return {"dir": d, "model": model, "est": est, "bus": bus_bytes}


def _write(env: dict, name: str, data: bytes) -> Path:
    p = env["dir"] / name
    p.write_bytes(data)
    return p


def _png_bytes(env: dict) -> bytes:
    image = cv2.imdecode(np.frombuffer(env["bus"], np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", image[::4, ::4])[1].tobytes()


def _bus(env: dict) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(env["bus"], np.uint8), cv2.IMREAD_COLOR)


def _model_copy(env: dict, name: str) -> Path:
    dst = env["dir"] / name
    shutil.copy(env["model"], dst)
    shutil.copy(card_path_for(env["model"]), card_path_for(dst))
    return dst


def _sha_mismatch(env: dict) -> Path:
    p = _model_copy(env, "tampered.onnx")
    with open(p, "ab") as f:
        f.write(b"\0")  # the file changed after its card was written
    return p


def _card_size_mismatch(env: dict) -> Path:
    p = _model_copy(env, "wrong_card.onnx")
    card = ModelCard.load(card_path_for(p))
    card.input_size = (128, 96)
    card.sha256 = sha256_file(p)
    card.save(card_path_for(p))
    return p


def _not_a_pose_model(env: dict) -> Path:
    """A classifier-shaped ONNX: NHWC image in, (1, 1000) logits out."""
    p = make_constant_output_model(env["dir"] / "classifier.onnx", [1, 64, 48, 3],
                                   np.zeros((1, 1000), np.float32), "image", "logits")
    card = ModelCard(name="classifier", input_size=(64, 48), heatmap_stride=4)
    card.sha256 = sha256_file(p)
    card.save(card_path_for(p))
    return p


def _wrong_heatmap_shape(env: dict) -> Path:
    """4-D output, but (1, 5, 5, 3): not what the card's 17 keypoints at stride 4 give."""
    p = make_constant_output_model(env["dir"] / "wrong_hm.onnx", [1, 64, 48, 3],
                                   np.zeros((1, 5, 5, 3), np.float32), "image", "heatmaps")
    card = ModelCard(name="wrong-hm", input_size=(64, 48), heatmap_stride=4)
    card.sha256 = sha256_file(p)
    card.save(card_path_for(p))
    return p


def _no_card(env: dict) -> Path:
    p = env["dir"] / "nocard.tflite"
    p.write_bytes(b"TFL3")
    return p


def _model_call(make: Callable[[dict], Path]) -> Callable[[dict], object]:
    def call(env: dict) -> object:
        with PoseEstimator(make(env), detector="whole-image") as est:
            return est(_bus(env))
    return call


# (id, call(env) -> result, expected exception or None for an empty/valid result, message)
CASES = [
    ("missing-file", lambda e: e["est"](e["dir"] / "nope.jpg"), InputError, "not found"),
    ("empty-file", lambda e: e["est"](_write(e, "empty.jpg", b"")), InputError, "empty"),
    ("corrupt-file", lambda e: e["est"](_write(e, "noise.jpg", np.random.default_rng(0)
                                               .integers(0, 255, 5000, np.uint8).tobytes())),
     InputError, "cannot decode"),
    ("text-as-image", lambda e: e["est"](_write(e, "notes.png", b"hello world")), InputError,
     "cannot decode"),
    ("truncated-jpeg", lambda e: e["est"](_write(e, "cut.jpg", e["bus"][: len(e["bus"]) // 2])),
     InputError, "truncated JPEG"),
    ("truncated-png", lambda e: e["est"](_write(e, "cut.png", _png_bytes(e)[:-200])),
     InputError, "truncated PNG|cannot decode"),
    ("directory", lambda e: e["est"](e["dir"]), InputError, "not a file"),
    ("zero-size", lambda e: e["est"](np.zeros((0, 0, 3), np.uint8)), InputError, "empty"),
    ("zero-width", lambda e: e["est"](np.zeros((10, 0, 3), np.uint8)), InputError, "empty"),
    ("five-channels", lambda e: e["est"](np.zeros((10, 10, 5), np.uint8)), InputError,
     r"\(10, 10, 5\)"),
    ("float-image-0-1", lambda e: e["est"](_bus(e).astype(np.float32) / 255), InputError,
     r"float32 with values in \[0, 1\]: scale it with \(img \* 255\)"),
    ("float-image-0-255", lambda e: e["est"](_bus(e).astype(np.float32)), InputError,
     r"values in \[0, 255\], already 0-255: convert it with img\.round\(\)"),
    ("float-image-normalised", lambda e: e["est"]((_bus(e) - 128.0) / 64), InputError,
     r"float64 with values in \[-2, 1\.984\], outside 0-255"),
    ("stream-option-typo", lambda e: e["est"].stream(sample("demo.mp4"), detect_evry=3),
     TypeError, r"unknown stream\(\) option\(s\): 'detect_evry' \(did you mean 'detect_every'"),
    ("not-an-array", lambda e: e["est"]([[1, 2], [3, 4]]), InputError, "numpy array"),
    ("bad-color", lambda e: e["est"](_bus(e), color="hsv"), InputError, "color"),
    ("too-many-pixels", lambda e: PoseEstimator(e["model"], max_image_pixels=1000)(_bus(e)),
     InputError, "too large"),
    ("box-outside-image", lambda e: e["est"](_bus(e), boxes=[[2000, 2000, 2100, 2200]]),
     InputError, "outside"),
    ("box-zero-area", lambda e: e["est"](_bus(e), boxes=[[10, 10, 10, 50]]), InputError,
     "zero area"),
    ("box-not-finite", lambda e: e["est"](_bus(e), boxes=[[0, 0, np.nan, 5]]), InputError,
     "not finite"),
    ("box-wrong-shape", lambda e: e["est"].estimate_boxes(_bus(e), [[1, 2, 3]]), InputError,
     r"\(n, 4\)"),
    ("model-name-unknown", lambda e: PoseEstimator("evopose2d-q"), ModelError, "Available"),
    ("model-file-missing", lambda e: PoseEstimator(e["dir"] / "none.onnx"), ModelError,
     "not found"),
    ("model-path-is-a-directory", lambda e: PoseEstimator(e["dir"]), ModelError,
     "model path is a directory, not a model file"),
    ("precision-unknown", lambda e: PoseEstimator("evopose2d-s", precision="int4"), ModelError,
     r"precision must be one of fp32, fp16, int8; received 'int4'$"),
    ("model-not-onnx", lambda e: PoseEstimator(_write(e, "junk.onnx", b"not a model")),
     ModelError, "cannot load|no card"),
    ("model-wrong-suffix", lambda e: PoseEstimator(_write(e, "model.pt", b"x")), ModelError,
     r"\.onnx or \.tflite"),
    ("model-no-card", lambda e: PoseEstimator(_no_card(e), backend="tflite"), ModelError,
     "no card"),
    ("card-sha256-mismatch", lambda e: PoseEstimator(_sha_mismatch(e)), ModelError,
     "card/file mismatch"),
    ("card-input-size-mismatch", lambda e: PoseEstimator(_card_size_mismatch(e)), ModelError,
     "card/file mismatch"),
    ("onnx-not-a-pose-model", lambda e: PoseEstimator(_not_a_pose_model(e)), ModelError,
     "not a pose model"),
    ("onnx-wrong-heatmaps", _model_call(_wrong_heatmap_shape), ModelError, "card/file mismatch"),
    ("backend-vs-file", lambda e: PoseEstimator(e["model"], backend="tflite"), ModelError,
     "cannot run the onnx file"),
    ("unknown-detector", lambda e: PoseEstimator(e["model"], detector="rcnn"), DetectorError,
     "unknown detector"),
    ("detector-file-missing", lambda e: PoseEstimator(e["model"], detector="/no/yolo.onnx"),
     DetectorError, "not found"),
    # Empty results, not errors:
    ("no-person-black-image", lambda e: e["est"](np.zeros((480, 640, 3), np.uint8)), None, 0),
    ("no-person-texture", lambda e: e["est"](np.random.default_rng(0).integers(
        0, 255, (240, 320, 3), np.uint8)), None, 0),
    ("no-boxes-given", lambda e: e["est"](_bus(e), boxes=np.zeros((0, 4))), None, 0),
]


@pytest.mark.parametrize(("call", "expected", "match"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(env, call, expected, match) -> None:
    if expected is None:
        result = call(env)
        assert isinstance(result, PoseResult) and len(result) == match
        assert result.keypoints.shape == (0, 17, 3)
        json.dumps(result.to_dict())
    else:
        with pytest.raises(expected, match=match):
            call(env)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


# Odd but valid image arrays: converted to 3-channel uint8, same people as the BGR image.
CONVERSIONS = [
    ("grayscale-2d", lambda b: _gray(b), 2),
    ("grayscale-1ch", lambda b: _gray(b)[..., None], 2),
    ("bgra", lambda b: cv2.cvtColor(b, cv2.COLOR_BGR2BGRA), 0),
    ("rgb-with-color-flag", lambda b: b[:, :, ::-1].copy(), 0),
    ("uint16", lambda b: b.astype(np.uint16) * 257, 0),
    ("fortran-order", lambda b: np.asfortranarray(b), 0),
]


@pytest.mark.parametrize(("convert", "max_count_change"), [c[1:] for c in CONVERSIONS],
                         ids=[c[0] for c in CONVERSIONS])
def test_image_conversions(env, convert, max_count_change) -> None:
    bus = _bus(env)
    want = env["est"](bus)
    image = convert(bus)
    color = "rgb" if convert is CONVERSIONS[3][1] else "bgr"
    got = env["est"](image, color=color)
    assert abs(len(got) - len(want)) <= max_count_change
    if max_count_change == 0:
        np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, atol=1.0)


def test_10000x10000_image(env) -> None:
    """A 100-megapixel image runs (people found, boxes scaled) without a memory blow-up."""
    bus = _bus(env)
    small = env["est"](bus)
    big = cv2.resize(bus, (10000, 10000), interpolation=cv2.INTER_LINEAR)
    result = env["est"](big)
    assert result.image_hw == (10000, 10000)
    assert len(result) >= 2 and abs(len(result) - len(small)) <= 1
    assert np.all(result.boxes_xyxy <= 10000) and np.all(result.boxes_xyxy >= 0)
    assert np.all(np.isfinite(result.keypoints))


def _exif_rotated_jpeg(image: np.ndarray, orientation: int = 6) -> bytes:
    """JPEG bytes with an EXIF orientation tag (as phones write them)."""
    import struct

    jpg = cv2.imencode(".jpg", image)[1].tobytes()
    tiff = (b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))
    payload = b"Exif\x00\x00" + tiff
    return jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpg[2:]


FILE_CASES = [
    ("gray16.png", lambda b: cv2.imencode(".png", _gray(b).astype(np.uint16) * 257)[1].tobytes()),
    ("bgra.png", lambda b: cv2.imencode(".png", cv2.cvtColor(b, cv2.COLOR_BGR2BGRA))[1].tobytes()),
    ("bgr16.png", lambda b: cv2.imencode(".png", b.astype(np.uint16) * 257)[1].tobytes()),
    ("gray.jpg", lambda b: cv2.imencode(".jpg", _gray(b))[1].tobytes()),
]


@pytest.mark.parametrize(("name", "encode"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_image_files_of_other_formats(env, name, encode) -> None:
    bus = _bus(env)
    path = _write(env, name, encode(bus))
    got = env["est"](path)
    assert got.image_hw == bus.shape[:2] and abs(len(got) - len(env["est"](bus))) <= 2


def test_exif_orientation_is_applied(env) -> None:
    from evopose_sdk.io import read_image

    bus = _bus(env)[::4, ::4]
    path = _write(env, "rotated.jpg", _exif_rotated_jpeg(bus, 6))
    image = read_image(path)
    assert image.shape == (bus.shape[1], bus.shape[0], 3)  # 90 degrees clockwise
    assert env["est"](path).image_hw == image.shape[:2]
