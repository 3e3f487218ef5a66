"""Helpers for the video / tracking / CLI tests: sample paths, ``evopose-infer`` in a
subprocess, real detections on the demo video, and a random-weight pose ONNX model made once
per test session.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
from _runtime_helpers import REPO, SAMPLES, sample  # noqa: F401  (re-exported to the tests)

_CACHE: dict[str, Path] = {}


# a frame count tqdm shows while demo.mp4 (230 frames) is mid-run, 2 frames done or more: on a
# fast machine tqdm's rate limit skips straight past small counts (CI at 41-44 frames/s showed
# 5/230 first, or nothing below 219/230), so no one count can be waited for
_DEMO_MID_RUN = re.compile(r" (?:[2-9]|[1-9]\d|1\d\d|2[01]\d)/230 ")


def demo_mid_run(stderr: str | bytes) -> bool:
    """Whether a CLI's stderr shows demo.mp4 between 2 and 219 of its 230 frames done."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    return _DEMO_MID_RUN.search(stderr) is not None


def run_infer(args: list, timeout: float = 300) -> subprocess.CompletedProcess:
    """``evopose-infer ARGS`` in a subprocess from the repository root, output captured."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "evopose_sdk.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def files_under(d: Path) -> list[str]:
    """Everything under ``d`` (hidden temp files included), relative names."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def write_frames(first: int, count: int, folder: Path, size: tuple[int, int] | None = None,
                 video: str = "demo.mp4", suffix: str = ".jpg") -> Path:
    """Frames ``first`` .. ``first + count - 1`` of a sample video (resized to ``size`` (w, h)
    when given) as numbered image files in ``folder``."""
    import cv2

    cap = cv2.VideoCapture(str(sample(video)))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    for i in range(count):
        ok, frame = cap.read()
        assert ok, f"{video} has no frame {first + i}"
        cv2.imwrite(str(folder / f"frame_{i:03d}{suffix}"),
                    frame if size is None else cv2.resize(frame, size))
    cap.release()
    return folder


def ssd_detector():
    """The default SSD-MobileNetV2 person detector (shipped in models/detectors/)."""
    from evopose_sdk.detectors import SSDPersonOnnxDetector

    return SSDPersonOnnxDetector()


@cache
def demo_detections(first: int, count: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Real SSD person detections (boxes (n, 4), scores (n,)) on demo.mp4 frames
    ``first .. first + count - 1``."""
    import cv2

    det = ssd_detector()
    cap = cv2.VideoCapture(str(sample("demo.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    out = []
    for _ in range(count):
        ok, frame = cap.read()
        if not ok:
            break
        out.append(det.detect(frame))
    cap.release()
    return tuple(out)


def _export_with_stage(out_dir: Path, size: str) -> Path | None:
    """Random-weight ONNX via the export stage (``evopose_sdk.export.export_model``)."""
    try:
        import keras

        from evopose_sdk.export import export_model
    except ImportError:
        return None
    keras.utils.set_random_seed(0)  # the same random weights on every run
    export_model(None, out_dir, formats="onnx", size=size, stem=f"evopose2d_{size.lower()}",
                 name=f"evopose2d-{size.lower()}-random", n_parity=2)
    files = sorted(out_dir.glob("*.onnx"))
    return files[0] if files else None


def _export_with_tf2onnx(out_dir: Path, size: str) -> Path:
    """Random-weight ONNX built directly: Keras builder -> tf2onnx, card with sha256."""
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    from evopose_sdk.card import ModelCard, card_path_for, sha256_file
    from evopose_sdk.training.network import build_named

    keras.utils.set_random_seed(0)
    model = build_named(size)
    h, w = model.input_shape[1:3]
    spec = (tf.TensorSpec((None, h, w, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = ["heatmaps" if o == old else o for o in node.output]
    proto.graph.output[0].name = "heatmaps"
    path = out_dir / f"evopose2d_{size.lower()}_random.onnx"
    onnx.save(proto, str(path))
    card = ModelCard(name=f"evopose2d-{size.lower()}-random", input_size=(h, w),
                     heatmap_stride=h // model.output_shape[1], trained=False)
    card.sha256 = sha256_file(path)
    card_path_for(path).write_text(card.to_json())
    return path


def random_pose_model(size: str = "XS") -> Path:
    """A random-weight EvoPose2D ONNX file + card, made once per session."""
    if size in _CACHE:
        return _CACHE[size]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    out_dir = Path(tempfile.mkdtemp(prefix=f"evopose_video_{size}_"))
    path = None
    try:
        path = _export_with_stage(out_dir, size)
    except Exception:  # noqa: BLE001 - fall back to the direct route below
        path = None
    if path is None:
        path = _export_with_tf2onnx(out_dir, size)
    _CACHE[size] = path
    return path
