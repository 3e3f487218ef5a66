"""``evopose-infer SOURCE``: pose on a video, webcam, image folder or image.

Writes an annotated video (``<name>_pose.mp4``; annotated images for an image or folder
source) and a JSON-lines file of keypoints (``<name>_pose.jsonl``, one line per frame),
next to the source or in ``--output``. Both are written to hidden temp files and renamed
into place when the run ends, so an output path holds a whole file or nothing.

Ctrl-C (SIGINT) or SIGTERM while frames stream stops after the current frame and keeps the
work done: the video and JSON lines of the frames so far are finalised, the CLI says
"N of M frames" and exits 130. A second signal, or one before the first frame, stops at
once and writes nothing. An error leaves no output (and no output folder it created).

Exit codes: 0 ok, 1 error (one-line message on stderr), 2 usage error, 130 interrupted
(:mod:`evopose_sdk.cli_shell`, shared by every ``evopose-*`` command).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import textwrap
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import cv2

from evopose_sdk import __version__
from evopose_sdk.cli_shell import ArgumentParser, add_verbosity_options, run_main, setup_logging
from evopose_sdk.errors import DetectorError, EvoPoseError, ModelError, RunInterrupted
from evopose_sdk.presets import DEFAULT_PRESET, PRESETS
from evopose_sdk.registry import DEFAULT_MODEL, PRECISIONS
from evopose_sdk.signals import StopSignals

logger = logging.getLogger("evopose_sdk.cli")

PROG = "evopose-infer"

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


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    parse.__name__ = f"integer >= {lo}"
    return parse


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


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
    g.add_argument("--backend", choices=("onnxruntime", "tflite"), default=None,
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


def _output_paths(src, out_dir: Path) -> tuple[Path, Path]:
    """(annotated output, JSON-lines path) for a source."""
    stem = f"{src.name}_pose"
    if src.kind == "images" and src.path is not None and src.path.is_file():
        return out_dir / f"{stem}{src.path.suffix}", out_dir / f"{stem}.jsonl"
    if src.kind == "images":
        return out_dir / stem, out_dir / f"{stem}.jsonl"
    return out_dir / f"{stem}.mp4", out_dir / f"{stem}.jsonl"


def _make_output_dir(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` (and parents); returns the folders created, outermost first."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EvoPoseError(f"output path {out_dir} is a file, not a folder")
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()][::-1]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvoPoseError(f"cannot create output folder {out_dir}: "
                           f"{exc.strerror or exc}") from None
    return created


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty


def _summary(args: argparse.Namespace, frames: int, total: int | None, people: int,
             seconds: float, outputs: list[Path], skipped: list[tuple[str, str]],
             interrupted: str | None) -> None:
    """One paragraph after a run: frames done (of how many), people, rate, outputs, skips."""
    of = f"{frames} of {total} frames" if total else f"{frames} frames"
    rate = f", {frames / seconds:.1f} frames/s" if seconds > 0 else ""
    line = f"{of}, {people} people{rate}; wrote {', '.join(map(str, outputs))}"
    if interrupted:
        logger.warning("interrupted by %s after %s", interrupted, line)
    elif not args.quiet:
        print(f"{PROG}: {line}", file=sys.stderr)
    if skipped:
        shown = "; ".join(reason for _, reason in skipped[:5])
        more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        logger.warning("skipped %d unreadable file(s): %s%s", len(skipped), shown, more)


def run(args: argparse.Namespace) -> int:
    """Run inference for parsed ``args``; returns the exit code (0, or 130 if interrupted)."""
    with StopSignals() as signals:  # graceful while frames stream, finishing after
        return _run(args, signals)


def _run(args: argparse.Namespace, signals: StopSignals) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from evopose_sdk.atomic import atomic_write_bytes
    from evopose_sdk.estimator import PoseEstimator
    from evopose_sdk.video import open_source, stream_with_info
    from evopose_sdk.writers import (
        AtomicVideoWriter,
        BackgroundSink,
        ImageFolderWriter,
        JsonLinesWriter,
    )

    src = open_source(args.source, fps=args.fps)
    created: list[Path] = []
    try:
        with ExitStack() as stack:
            stack.callback(src.close)
            try:
                estimator = PoseEstimator(**estimator_options(args))
            except (ModelError, DetectorError) as exc:  # --model / --detector: bad arguments
                build_parser().error(str(exc))
            stack.enter_context(estimator)  # it warns when its card says trained=false
            if args.output is not None:
                out_dir = Path(args.output)
                created = _make_output_dir(out_dir)  # after the model loaded: no empty folder
            elif src.path is not None:
                out_dir = src.path.parent
            else:
                out_dir = Path.cwd()
            annotated_path, json_path = _output_paths(src, out_dir)

            single_image = src.kind == "images" and src.path is not None and src.path.is_file()
            json_writer = stack.enter_context(JsonLinesWriter(json_path))
            video_writer = image_writer = None
            if not args.no_video:
                if src.kind == "images" and not single_image:
                    image_writer = stack.enter_context(ImageFolderWriter(annotated_path))
                elif not single_image:
                    video_writer = stack.enter_context(AtomicVideoWriter(annotated_path, src.fps))

            total = src.frame_count if src.frame_count > 0 else None
            if args.max_frames is not None:
                total = min(total, args.max_frames) if total else args.max_frames
            bar = stack.enter_context(tqdm(total=total, unit="frame", desc=src.name,
                                           file=sys.stderr, disable=args.quiet,
                                           dynamic_ncols=True))
            stack.enter_context(logging_redirect_tqdm())  # warnings above the bar, not on it
            # photos (an image, a folder) are never tracked or smoothed: stream()'s default
            # for them; a video or webcam is, unless asked not to
            tracking = False if args.no_track else None
            frames_iter = stack.enter_context(contextlib.closing(stream_with_info(
                estimator, src,  # detect_every: the estimator's (preset, --detect-every)
                smoothing=False if args.no_smooth or args.no_track else None,
                tracking=tracking, max_frames=args.max_frames)))

            def write_outputs(info, frame, result) -> None:  # on the output thread
                record: dict = {"frame": info.index}
                if src.kind == "images":  # photos have a file name, no time
                    record["file"] = info.name
                else:
                    record["time_s"] = round(info.time_s, 4)
                record.update(result.to_dict())
                json_writer.write(record)
                if not args.no_video:
                    drawn = result.draw(frame, keypoint_threshold=args.show_threshold)
                    if video_writer is not None:
                        video_writer.write(drawn)
                    elif image_writer is not None:
                        image_writer.write(info.name or f"{info.index:06d}.jpg", drawn)
                    else:
                        ok, buf = cv2.imencode(annotated_path.suffix, drawn)
                        if not ok:
                            raise EvoPoseError(f"OpenCV cannot encode {annotated_path}")
                        atomic_write_bytes(annotated_path, buf.tobytes())

            # JSON, drawing and encoding of frame t run beside the pose network on frame t+1;
            # closed first on leaving (LIFO), so the writers publish only complete output
            sink = stack.enter_context(BackgroundSink(write_outputs))
            frames = people = 0
            t0 = time.perf_counter()
            signals.graceful = True
            for info, frame, result in frames_iter:
                sink.put(info, frame, result)
                frames += 1
                people += len(result)
                bar.update(1)
                if signals.received:
                    break
            signals.finishing = True
            sink.close()  # every frame read is written before the files are published
            seconds = time.perf_counter() - t0
            if frames == 0:
                if signals.received:
                    raise KeyboardInterrupt(signals.received)
                raise EvoPoseError(f"no frames could be read from {args.source}")
    except BaseException:
        _remove_if_empty(created)
        raise
    outputs = [json_path] + ([] if args.no_video else [annotated_path])
    _summary(args, frames, total, people, seconds, outputs, src.skipped, signals.received)
    return 130 if signals.received else 0


def list_models() -> str:
    """The ``--list-models`` table: one row per shipped model file, from its card."""
    from evopose_sdk.estimator import default_precision
    from evopose_sdk.registry import DEFAULT_MODEL, available_models

    default = (DEFAULT_MODEL, default_precision(DEFAULT_MODEL) or "fp32")
    rows = [("name", "precision", "file", "MB", "AP", "ms/person", "licence")]
    for m in sorted(available_models(), key=lambda m: (m.card.name, PRECISIONS.index(
            m.card.precision) if m.card.precision in PRECISIONS else 9)):
        dev = (m.card.metrics or {}).get("dev_val", {}).get("rows", [])
        row = next((r for r in dev if r.get("boxes") == "gt" and r.get("flip")), {})
        note = str((m.card.training_data or {}).get("licence_note", ""))
        licence = "research use only" if "research-use only" in note else (note or "see card")
        rows.append((m.card.name + (" (default)" if (m.card.name, m.card.precision) == default
                                    else ""),
                     m.card.precision, m.path.name, f"{m.path.stat().st_size / 1e6:.1f}",
                     f"{row['AP']:.3f}" if "AP" in row else "-",
                     f"{row['ms_per_person']:.1f}" if "ms_per_person" in row else "-", licence))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + ("\n\nAP: dev_val (300 people), ground-truth boxes, flip test; "
                               "ms/person: that run's pose time on 2 CPU cores. Ask for one by "
                               "name and precision (--model evopose2d-s --precision int8) or by "
                               "file name (--model evopose2d-s_int8). Code: Apache-2.0; the "
                               "weights: trained on research-use-only data (README, Licence).")


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        print(list_models())
        return 0
    if args.source is None:
        parser.error("the following arguments are required: SOURCE (or --list-models)")
    setup_logging(PROG, args.quiet, args.verbose, default=logging.WARNING)
    with contextlib.suppress(AttributeError):  # OpenCV's own log: errors only
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return run(args)
    except KeyboardInterrupt as exc:
        how = f" by {exc.args[0]}" if exc.args else ""
        raise RunInterrupted(f"interrupted{how}; no output written") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``evopose-infer``; returns the exit code.

    Bad input that OpenCV or numpy reject (``cv2.error``, ``ValueError``) is a runtime
    failure too: one line, exit 1.
    """
    return run_main(PROG, _main, argv, failures=(ValueError, cv2.error))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
