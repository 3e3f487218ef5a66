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

The parser, its option types and the mapping to estimator options live in
:mod:`evopose_sdk.cli_args`; this module runs the command (outputs, the frame loop, the
summary, ``--list-models``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import cv2

from evopose_sdk.cli_args import PROG, build_parser, estimator_options
from evopose_sdk.cli_shell import run_main, setup_logging
from evopose_sdk.errors import DetectorError, EvoPoseError, ModelError, RunInterrupted
from evopose_sdk.registry import DEFAULT_MODEL, PRECISIONS
from evopose_sdk.signals import StopSignals

logger = logging.getLogger("evopose_sdk.cli")


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
    from evopose_sdk.background import BackgroundSink
    from evopose_sdk.estimator import PoseEstimator
    from evopose_sdk.video import open_source, stream_with_info
    from evopose_sdk.writers import AtomicVideoWriter, ImageFolderWriter, JsonLinesWriter

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
    from evopose_sdk.presets import DEFAULT_PRESET, PRESETS
    from evopose_sdk.registry import available_models

    default = (DEFAULT_MODEL, default_precision(DEFAULT_MODEL) or "fp32")
    by_preset = {(p.model or DEFAULT_MODEL, p.precision or default[1]): name
                 for name, p in PRESETS.items() if name != DEFAULT_PRESET}
    rows = [("name", "precision", "file", "MB", "AP", "ms/person", "licence")]
    for m in sorted(available_models(), key=lambda m: (m.card.name, PRECISIONS.index(
            m.card.precision) if m.card.precision in PRECISIONS else 9)):
        dev = (m.card.metrics or {}).get("dev_val", {}).get("rows", [])
        row = next((r for r in dev if r.get("boxes") == "gt" and r.get("flip")), {})
        note = str((m.card.training_data or {}).get("licence_note", ""))
        licence = "research use only" if "research-use only" in note else (note or "see card")
        key = (m.card.name, m.card.precision)
        mark = " (default)" if key == default else (
            f" (--{by_preset[key]})" if key in by_preset else "")
        rows.append((m.card.name + mark,
                     m.card.precision, m.path.name, f"{m.path.stat().st_size / 1e6:.1f}",
                     f"{row['AP']:.3f}" if "AP" in row else "-",
                     f"{row['ms_per_person']:.1f}" if "ms_per_person" in row else "-", licence))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + ("\n\nAP: dev_val (300 people), ground-truth boxes, flip test; "
                               "ms/person: that run's pose time on 2 CPU cores. Ask for one by "
                               "name and precision (--model evopose2d-s --precision int8) or by "
                               "file name (--model evopose2d-s_int8). Code: Apache-2.0; the "
                               "weights: trained on research-use-only data (README, Licence)."
                               "\n\nPresets (end to end, detector boxes):\n" + "\n".join(
                                   f"  {name}: {p.summary}" for name, p in PRESETS.items()))


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
