"""The person-detector side: ultralytics YOLO weights -> an ONNX detector file.

The file has input ``images`` (1, 3, imgsz, imgsz) float32 RGB 0-1 and output ``output0``
(1, 4 + classes, N) without NMS (boxes cx, cy, w, h in input pixels, then class scores), which
:class:`evopose_sdk.detectors.YOLOOnnxDetector` reads with onnxruntime alone (no torch).

Needs ``torch`` and ``ultralytics`` (extra ``[yolo-export]``)::

    pip install torch==2.13.0          # the CPU wheel; plain `torch` pulls GBs of CUDA
    pip install --no-deps ultralytics==8.4.190 ultralytics-thop
    pip install pillow psutil pyyaml requests

``--no-deps`` keeps ultralytics from installing ``opencv-python`` over
``opencv-python-headless``. No YOLO weights can be downloaded here: a model built from its
yaml (``yolo11n.yaml``) exports with random weights (card ``trained: false``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
from evopose_sdk.card import sha256_file
from evopose_sdk.export.errors import ExportError

log = logging.getLogger(__name__)

DETECTOR_CARD_SUFFIX = ".detector.json"
INSTALL_HINT = ("pip install torch==2.13.0 && pip install --no-deps ultralytics==8.4.190 "
                "ultralytics-thop && pip install pillow psutil pyyaml requests")


def detector_card_path(path: str | os.PathLike) -> Path:
    """``yolo11n.onnx`` -> ``yolo11n.onnx.detector.json``."""
    p = Path(path)
    return p.with_name(p.name + DETECTOR_CARD_SUFFIX)


@contextlib.contextmanager
def _ultralytics_env(config_dir: Path) -> Iterator[None]:
    """Offline, no auto-install, a writable settings dir; tolerate a missing torchvision.

    ultralytics reads ``importlib.metadata.version("torchvision")`` at import time; there is
    no CPU torchvision wheel here and export does not need it, so a missing one reads as
    "0.0.0" while ultralytics is imported (the patch is undone right after).
    """
    saved = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")}
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    original = md.version

    def version(name: str) -> str:
        try:
            return original(name)
        except md.PackageNotFoundError:
            if name == "torchvision":
                return "0.0.0"
            raise

    md.version = version
    try:
        yield
    finally:
        md.version = original
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def yolo_available() -> str | None:
    """None when torch and ultralytics are installed, else a message saying what is missing."""
    missing = []
    for pkg in ("torch", "ultralytics"):
        try:
            md.version(pkg)
        except md.PackageNotFoundError:
            missing.append(pkg)
    return None if not missing else (
        f"YOLO export needs {' and '.join(missing)} (not installed): {INSTALL_HINT}")


def export_yolo(
    model: str | os.PathLike = "yolo11n.yaml",
    out: str | os.PathLike | None = None,
    *,
    imgsz: int = 640,
    opset: int | None = None,
) -> Path:
    """Export ultralytics YOLO weights (``.pt``) or an architecture (``.yaml``) to ONNX.

    Args:
        model: ``yolo11n.yaml`` (built-in architecture, random weights) or a ``.pt``/``.yaml``
            path.
        out: output ``.onnx`` path (default ``<model stem>.onnx`` in the current folder).
        imgsz: square input size in pixels (a multiple of 32).
        opset: ONNX opset (default: ultralytics' choice).

    Returns:
        Path of the ONNX file; a JSON description is written next to it
        (:func:`detector_card_path`).

    Raises:
        ExportError: missing packages or file, bad size, or a failed export.
    """
    spec = str(model)
    suffix = Path(spec).suffix.lower()
    if suffix not in (".pt", ".yaml", ".yml"):
        raise ExportError(f"YOLO model must be a .pt weights file or a .yaml architecture; "
                          f"received {spec!r}")
    if suffix == ".pt" and not Path(spec).is_file():
        raise ExportError(f"YOLO weights not found: {spec} (no weights can be downloaded here; "
                          "build from a yaml such as yolo11n.yaml for random weights)")
    if int(imgsz) <= 0 or int(imgsz) % 32:
        raise ExportError(f"imgsz must be a positive multiple of 32; received {imgsz}")
    out_path = Path(out) if out is not None else Path(Path(spec).stem + ".onnx")
    problem = yolo_available()
    if problem:
        raise ExportError(problem)
    trained = suffix == ".pt"

    with tempfile.TemporaryDirectory(prefix="evopose-yolo-") as tmp, \
            _ultralytics_env(Path(tmp) / "config"):
        tmpdir = Path(tmp)
        src = spec
        if suffix == ".pt" or Path(spec).is_file():
            src = str(tmpdir / Path(spec).name)
            shutil.copyfile(spec, src)
        try:
            from ultralytics import YOLO
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"cannot import ultralytics: {type(exc).__name__}: {exc}; "
                              f"{INSTALL_HINT}") from None
        cwd = os.getcwd()
        os.chdir(tmpdir)  # ultralytics writes yaml-built exports into the working folder
        try:
            yolo = YOLO(src)
            kwargs: dict[str, Any] = {"format": "onnx", "imgsz": int(imgsz), "nms": False,
                                      "dynamic": False, "simplify": False, "device": "cpu"}
            if opset is not None:
                kwargs["opset"] = int(opset)
            exported = Path(yolo.export(**kwargs))
            names = {int(k): str(v) for k, v in dict(yolo.names).items()}
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"ultralytics export of {spec} failed: "
                              f"{type(exc).__name__}: {exc}") from None
        finally:
            os.chdir(cwd)
        if not exported.is_absolute():
            exported = tmpdir / exported
        data = exported.read_bytes()

    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    inp, outp = session.get_inputs()[0], session.get_outputs()[0]
    atomic_write_bytes(out_path, data)
    card = {
        "kind": "yolo-detector",
        "source": spec,
        "trained": trained,
        "imgsz": int(imgsz),
        "input": {"name": inp.name, "shape": list(inp.shape), "layout": "NCHW RGB 0-1"},
        "output": {"name": outp.name, "shape": list(outp.shape),
                   "layout": "(1, 4 + classes, N): cx, cy, w, h (input px), class scores; "
                             "no NMS"},
        "nms": False,
        "person_class": 0,
        "class_names": names,
        "versions": {p: md.version(p) for p in ("ultralytics", "torch")},
        "sha256": sha256_file(out_path),
    }
    atomic_write_text(detector_card_path(out_path), json.dumps(card, indent=2) + "\n")
    if not trained:
        log.warning("%s was built from %s with random weights: it detects nothing useful",
                    out_path, spec)
    log.info("YOLO detector written: %s (%.1f MB) output %s", out_path,
             out_path.stat().st_size / 1e6, list(outp.shape))
    return out_path
