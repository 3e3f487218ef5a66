"""``evopose-infer``'s command line: the argument parser (every option documented in
``--help``, with the epilog of outputs, defaults by source and presets), the option types
that check each value, and the mapping of parsed arguments to
:class:`~evopose_sdk.PoseEstimator` options. :mod:`evopose_sdk.cli` runs the command.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from collections.abc import Callable
from typing import TypeVar

from evopose_sdk import __version__
from evopose_sdk.backends import BACKEND_NAMES
from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options
from evopose_sdk.presets import DEFAULT_PRESET, PRESETS
from evopose_sdk.registry import DEFAULT_MODEL, PRECISIONS

PROG = "evopose-infer"
_N = TypeVar("_N", int, float)

_EPILOG = """\
outputs:
  video / webcam source   <name>_pose.mp4 (annotated: H.264 with the [video] extra,
                          else mp4v, which browsers do not play) + <name>_pose.jsonl
  image file              <stem>_pose<suffix>       + <stem>_pose.jsonl
  image folder            <folder>_pose/ (annotated) + <folder>_pose.jsonl
  JSON line: {"frame", "time_s" (video/webcam) or "file" (images), "image_hw",
              "keypoint_names",
              "people": [{"box_xyxy", "box_score", "score", "track_id",
                          "keypoints": K x [x, y, score] (image px, raw scores)}],
              "speed_ms": {stage: ms}}

defaults by source (dev_val AP with detector boxes; speed on 2 CPU cores, README):
  image / image folder  photos: each image alone (no tracking, smoothing or keypoint-
                        following), detector on every image, flip test on (AP 0.207 vs
                        0.191 without; bus.jpg, 3 people: 827 vs 427 ms per photo on a
                        loaded 2-core machine)
  video / webcam        detector every 3rd frame, crops follow keypoints in between, no
                        flip test, tracking + One-Euro smoothing (25.6 frames/s on vtest.avi)

presets (PoseEstimator(preset=...); an option given explicitly wins):
{presets}

models: a shipped file by name (evopose2d-s_int8) or a model name + --precision
  (evopose2d-s --precision int8); without --precision, PoseEstimator's default for the
  model; with --backend tflite and no --precision, the int8 file where its card is within
  1 AP of fp32 (the fastest: 35.6 vs 19.5 frames/s for fp16), else the most precise TFLite
  file. `evopose-infer --list-models` lists them.

examples:
  evopose-infer walk.mp4
  evopose-infer walk.mp4 --accurate --output out/  # fp32, flip test, detector every frame
  evopose-infer walk.mp4 --fast                   # S-128 int8, detector every 5th frame
  evopose-infer 0 --max-frames 300                # webcam 0
  evopose-infer photos/ --model my_model.onnx --detector yolo11n.onnx
  evopose-infer --list-models
"""


def _checked_number(convert: Callable[[str], _N], kind: str, ok: Callable[[_N], bool],
                    rule: str) -> Callable[[str], _N]:
    """An argparse ``type``: ``convert`` the text (else "expected ``kind``"), then refuse a
    value that is not ``ok`` ("must be ``rule``")."""
    def parse(text: str) -> _N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
        return value
    parse.__name__ = f"{kind.split()[-1]} {rule}"
    return parse


def _int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers >= ``lo``."""
    return _checked_number(int, "an integer", lambda v: v >= lo, f">= {lo}")


_unit_float = _checked_number(float, "a number", lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
_positive_float = _checked_number(float, "a number", lambda v: math.isfinite(v) and v > 0, "> 0")


def _detector_arg(text: str) -> str:
    """``--detector``: a name or file :func:`~evopose_sdk.detectors.make_detector` knows."""
    from evopose_sdk.detectors import DETECTOR_CHOICES, is_detector_spec

    if not is_detector_spec(text):
        raise argparse.ArgumentTypeError(f"unknown detector {text!r}; use {DETECTOR_CHOICES}")
    return text


def _device_arg(text: str) -> str:
    """``--device``: a device name :func:`~evopose_sdk.backends.parse_device` knows."""
    from evopose_sdk.backends import parse_device

    try:
        parse_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _presets_help() -> str:
    """The epilog's lines for :data:`~evopose_sdk.presets.PRESETS`."""
    lines = []
    for name, preset in PRESETS.items():
        flag = "(no flag)" if name == DEFAULT_PRESET else f"--{name}"
        lines += textwrap.wrap(preset.summary, 88, initial_indent=f"  {flag:22}",
                               subsequent_indent=" " * 24)
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    """The ``evopose-infer`` argument parser (every option documented in ``--help``)."""
    p = ArgumentParser(
        prog=PROG, epilog=_EPILOG.replace("{presets}", _presets_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="EvoPose2D 2D human pose on a video file, webcam, image folder or image: "
                    "writes an annotated video/images and a JSON-lines file of keypoints.")
    p.add_argument("source", metavar="SOURCE", nargs="?",
                   help="video file, image folder, image file, or webcam index (e.g. 0)")
    p.add_argument("--version", action="version", version=f"{PROG} (evopose-sdk) {__version__}",
                   help="print the version and exit")
    p.add_argument("--list-models", action="store_true",
                   help="list the shipped models (name, precision, file, dev_val AP, ms per "
                        "person, licence, from their cards) and exit")
    g = p.add_argument_group("model")
    presets = g.add_mutually_exclusive_group()
    for name, preset in PRESETS.items():
        if name != DEFAULT_PRESET:
            presets.add_argument(f"--{name}", dest="preset", action="store_const", const=name,
                                 default=DEFAULT_PRESET,
                                 help=f"the {name} preset: {preset.summary} (= "
                                      f"{preset.flags()}; each can still be given to "
                                      f"override it)")
    g.add_argument("--model", default=None,
                   help="shipped model name (evopose2d-s), shipped file name (evopose2d-s_int8) "
                        f"or a path to an .onnx/.tflite file with its card (default: {DEFAULT_MODEL})")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="which file of a shipped model: fp32 (ONNX), fp16 or int8 (TFLite) "
                        "(default: PoseEstimator's for the model; see 'models' below)")
    g.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="inference runtime (default: from the model file found)")
    g.add_argument("--device", type=_device_arg, default=None,
                   help="where ONNX Runtime runs: cpu (default), cuda, cuda:1, tensorrt, rocm, "
                        "directml, coreml, openvino; a provider the installed onnxruntime lacks "
                        "(onnxruntime-gpu brings CUDA) falls back to the CPU with a warning. "
                        "TFLite files run on the CPU, so a GPU device picks the fp32 ONNX file")
    g.add_argument("--threads", type=_int_at_least(1), default=None,
                   help="intra-op threads for the pose network (default: runtime's choice)")
    flip = g.add_mutually_exclusive_group()
    flip.add_argument("--flip", dest="flip", action="store_const", const=True, default=None,
                      help="flip test: also run each crop mirrored and average (about 2x the "
                           "pose network's time for +0.016 dev_val AP with detector boxes). "
                           "Default by source: on for an image or image folder, off for a "
                           "video or webcam; see 'defaults by source' below")
    flip.add_argument("--no-flip", dest="flip", action="store_const", const=False,
                      help="no flip test, whatever the source")
    g.add_argument("--detector", default="default", type=_detector_arg,
                   help="person detector: 'default'/'ssd' (SSD-MobileNetV2, offline), "
                        "'none' (whole image is one person), a YOLO .onnx or .pt path "
                        "(default: %(default)s)")
    v = p.add_argument_group("video")
    v.add_argument("--detect-every", type=_int_at_least(1), default=None, metavar="K",
                   help="run the detector every K frames of a video or webcam; in between, "
                        "crops follow the previous frame's keypoints (default: 3, or the "
                        "preset's; images: every image)")
    v.add_argument("--no-smooth", action="store_true",
                   help="disable One-Euro temporal smoothing of keypoints (video / webcam; "
                        "images are never smoothed)")
    v.add_argument("--no-track", action="store_true",
                   help="disable persistent track ids (also disables smoothing; images are "
                        "never tracked)")
    v.add_argument("--max-frames", type=_int_at_least(1), default=None, metavar="N",
                   help="stop after N frames")
    v.add_argument("--fps", type=_positive_float, default=None,
                   help="frame rate of the output video (default: the source's, or 30)")
    o = p.add_argument_group("output")
    o.add_argument("--output", "-o", default=None, metavar="DIR",
                   help="output folder, created if missing (default: next to the source; "
                        "the current folder for a webcam)")
    o.add_argument("--show-threshold", type=_unit_float, default=0.3, metavar="T",
                   help="draw keypoints scoring at least T (JSON keeps raw scores) "
                        "(default: %(default)s)")
    o.add_argument("--no-video", action="store_true",
                   help="write only the JSON-lines file, no annotated video/images")
    add_verbosity_options(o)
    return p


def estimator_options(args: argparse.Namespace) -> dict:
    """PoseEstimator keyword arguments of parsed ``args``: the preset (``--fast``,
    ``--accurate``, else ``"default"``) and the options given on the command line, which win
    over it. Options not given are not passed, so the preset's values and then the
    estimator's defaults apply (the flip test and ``detect_every`` by source)."""
    given = dict(model=args.model, detector=args.detector, backend=args.backend,
                 precision=args.precision, threads=args.threads, device=args.device,
                 flip_test=args.flip, detect_every=args.detect_every)
    return {"preset": args.preset, **{k: v for k, v in given.items() if v is not None}}
