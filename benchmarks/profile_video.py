"""Where a video frame's time goes: per-stage profile of ``evopose-infer`` modes, one run.

Each variant is a string of ``evopose-infer`` flags (``"--fast"``, ``"--fast --threads 1"``,
...), parsed by the CLI's own parser, and runs in a fresh process (own warm-up, own memory),
variants alternating over ``--rounds`` so that a machine's changing load falls on all of
them alike. In each process, on the first ``--frames`` frames of the video:

1. **serial**: every stage on the calling thread (``stream(..., pipeline=False)``), each timed
   on its own: decode, detect (amortised over the frames: it runs once in ``detect_every``),
   preprocess (crops), pose (network), postprocess (heatmap decoding + NMS), track, smooth,
   and what the CLI adds per frame: draw, encode (mp4v) and JSON (``to_dict`` + ``dumps``);
   ``loop`` is the rest of a frame's wall time (keypoint boxes, generator and bookkeeping);
2. **pipelined**: the stream as ``evopose-infer`` runs it (decode + detect in a worker
   thread), frames/s of the stream alone (``fps_stream``, what ``bench_runtime.py`` times);
   ``wait`` is the consumer's time per frame outside its own stages (hand-offs, waiting for
   the worker);
3. **CLI**: ``evopose-infer VIDEO --max-frames N FLAGS`` itself (annotated video + JSON
   lines), the frames/s of its summary line (``fps_cli``).

``--root`` runs another checkout's ``evopose_sdk`` (e.g. the code before a change, from
``git archive``) with this checkout's models, for a before/after table in the same run.

    python benchmarks/profile_video.py --frames 100 --rounds 2 -- "--fast" "--fast --threads 1"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("profile_video")

#: Stages of the serial profile, in pipeline order (ms per frame).
STAGES = ("decode", "detect", "preprocess", "pose", "postprocess", "track", "smooth",
          "draw", "encode", "json", "loop")


def _estimator_and_stream_kwargs(flags: str) -> tuple[dict, dict]:
    """PoseEstimator and stream keyword arguments of ``evopose-infer`` ``flags``, as the CLI
    builds them (presets included, where the checkout's CLI has them)."""
    from evopose_sdk import cli

    args = cli.build_parser().parse_args(["SOURCE", *flags.split()])
    apply = getattr(cli, "apply_preset", None)  # a checkout whose CLI filled --fast itself
    if apply is not None:
        apply(args)
    if hasattr(cli, "estimator_options"):
        est = cli.estimator_options(args)
    else:  # a checkout from before --flip
        est = dict(model=args.model, detector=args.detector, flip_test=not args.no_flip,
                   backend=args.backend, precision=args.precision, threads=args.threads)
    stream = dict(detect_every=args.detect_every, smoothing=not (args.no_track or args.no_smooth),
                  tracking=not args.no_track)
    return est, stream


def profile(flags: str, video: str, frames: int) -> dict:
    """Serial per-stage ms and pipelined fps of one flag set (in this process)."""
    import cv2

    from evopose_sdk import PoseEstimator
    from evopose_sdk.video import stream_with_info

    est_kw, stream_kw = _estimator_and_stream_kwargs(flags)
    out: dict = dict(flags=flags)
    with PoseEstimator(**est_kw) as est, tempfile.TemporaryDirectory() as tmp:
        # what the estimator runs with (a preset's values included, where it has presets)
        out.update(file=est.model_path.name, threads=est.options.threads,
                   detect_every=stream_kw["detect_every"] or getattr(
                       est, "detect_every_for", lambda kind: None)("video"))
        for _ in stream_with_info(est, video, max_frames=5, **stream_kw):  # warm-up
            pass
        # 1. serial: each stage timed on its own
        sums = dict.fromkeys(STAGES, 0.0)
        people = n = 0
        writer = cv2.VideoWriter(str(Path(tmp) / "serial.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                 25.0, (768, 576))
        t_frame = time.perf_counter()
        for info, frame, r in stream_with_info(est, video, max_frames=frames, pipeline=False,
                                               **stream_kw):
            t0 = time.perf_counter()
            drawn = r.draw(frame)
            t1 = time.perf_counter()
            if (drawn.shape[1], drawn.shape[0]) == (768, 576):
                writer.write(drawn)
            t2 = time.perf_counter()
            json.dumps({"frame": info.index, **r.to_dict()})
            t3 = time.perf_counter()
            for k, v in r.speed_ms.items():
                sums[k] = sums.get(k, 0.0) + v
            sums["draw"] += (t1 - t0) * 1e3
            sums["encode"] += (t2 - t1) * 1e3
            sums["json"] += (t3 - t2) * 1e3
            wall = (t3 - t_frame) * 1e3
            sums["loop"] += wall - sum(v for k, v in r.speed_ms.items()) - (t3 - t0) * 1e3
            t_frame = time.perf_counter()
            people += len(r)
            n += 1
        writer.release()
        ms = {k: v / max(n, 1) for k, v in sums.items()}
        out.update(frames=n, people_per_frame=people / max(n, 1),
                   serial_ms=ms, serial_total_ms=sum(ms.values()),
                   pose_ms_per_person=ms["pose"] / max(people / max(n, 1), 1e-9))
        # 2. pipelined: the stream alone, as bench_runtime.py times it
        own = 0.0
        m = 0
        t0 = time.perf_counter()
        for _, _, r in stream_with_info(est, video, max_frames=frames, **stream_kw):
            own += sum(v for k, v in r.speed_ms.items() if k not in ("decode", "detect"))
            m += 1
        elapsed = time.perf_counter() - t0
        out["fps_stream"] = m / elapsed
        out["wait_ms_stream"] = (elapsed * 1e3 - own) / max(m, 1)
    # 3. the CLI itself (annotated video + JSON lines), its own frames/s summary line
    out["fps_cli"] = _cli_fps(flags, video, frames)
    return out


def follow_agreement(flags: str, video: str, frames: int, ks: tuple[int, ...] = (5, 10)) -> list:
    """How far keypoint-following crops drift from detecting on every frame (same model).

    For each ``k``: the stream with ``detect_every=k`` against ``detect_every=1`` (smoothing
    off in both), people matched greedily by OKS (the per-frame run's box area as scale; its
    keypoints scoring >= 0.3 count): ``recall`` = share of the per-frame run's people matched
    at OKS >= 0.5, ``mean_oks`` over the matched, and people per frame of each run.
    """
    from evopose_sdk import PoseEstimator
    from evopose_sdk.nms import keypoint_oks
    from evopose_sdk.video import stream_with_info

    est_kw, stream_kw = _estimator_and_stream_kwargs(flags)
    stream_kw.update(smoothing=False)
    rows = []
    with PoseEstimator(**est_kw) as est:
        def run(k: int) -> list:
            kw = dict(stream_kw, detect_every=k)
            return [r for _, _, r in stream_with_info(est, video, max_frames=frames, **kw)]

        ref = run(1)
        for k in ks:
            got = run(k)
            matched, oks_sum, n_ref = 0, 0.0, 0
            for a, b in zip(ref, got, strict=True):
                n_ref += len(a)
                free = set(range(len(b)))
                for i in range(len(a)):
                    box = a.boxes_xyxy[i]
                    area = float((box[2] - box[0]) * (box[3] - box[1]))
                    vis = a.keypoints[i, :, 2] >= 0.3
                    if not vis.any() or not free:
                        continue
                    sims = {j: float(keypoint_oks(b.keypoints[j, vis, :2], a.keypoints[i, vis, :2],
                                                  area).mean()) for j in free}
                    j = max(sims, key=sims.get)
                    if sims[j] >= 0.5:
                        free.discard(j)
                        matched += 1
                        oks_sum += sims[j]
            rows.append(dict(flags=flags, detect_every=k, frames=len(ref),
                             recall=matched / max(n_ref, 1), mean_oks=oks_sum / max(matched, 1),
                             people_per_frame_every_frame=n_ref / max(len(ref), 1),
                             people_per_frame=sum(len(r) for r in got) / max(len(got), 1)))
    return rows


def _cli_fps(flags: str, video: str, frames: int) -> float:
    """frames/s that ``evopose-infer VIDEO --max-frames N FLAGS`` reports (its loop only)."""
    import contextlib
    import io
    import re

    from evopose_sdk.cli import main as cli_main

    err = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(err):
        rc = cli_main([video, "--max-frames", str(frames), "-o", tmp, *flags.split()])
    found = re.findall(r"([0-9.]+) frames/s", err.getvalue())
    if rc != 0 or not found:
        raise RuntimeError(f"evopose-infer {flags} failed ({rc}): {err.getvalue()[-2000:]}")
    return float(found[-1])


def _in_subprocess(flags: str, video: str, frames: int, root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), EVOPOSE_MODELS_DIR=str(REPO / "models"))
    # ``root``'s evopose_sdk comes first: the process runs in ``root`` with it on PYTHONPATH
    code = (f"import json, runpy; p = runpy.run_path({__file__!r}); "
            f"print('@@' + json.dumps(p['profile']({flags!r}, {video!r}, {frames})))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root)
    lines = [x for x in res.stdout.splitlines() if x.startswith("@@")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"{flags!r} in {root} failed:\n{res.stderr[-3000:]}")
    row = json.loads(lines[-1][2:])
    import evopose_sdk

    if Path(root).resolve() != Path(evopose_sdk.__file__).resolve().parents[1]:
        row["code"] = str(root)
    return row


def _mean_rows(rows: list[dict]) -> dict:
    """Mean of the numbers of several rounds of one variant."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            out[key] = sum(r[key] for r in rows) / len(rows)
        elif isinstance(value, dict):
            out[key] = {k: sum(r[key][k] for r in rows) / len(rows) for k in value}
    return out


def markdown(rows: list[dict]) -> str:
    """One table: a column per variant, a row per stage (ms per frame), then fps."""
    names = [r.get("label", r["flags"]) for r in rows]
    lines = ["| ms per frame | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " ---: |" * len(rows)]
    for stage in STAGES:
        lines.append(f"| {stage} | " + " | ".join(f"{r['serial_ms'].get(stage, 0.0):.1f}"
                                                  for r in rows) + " |")
    extra = [("serial total", "serial_total_ms", "{:.1f}"),
             ("people per frame", "people_per_frame", "{:.2f}"),
             ("pose ms per person", "pose_ms_per_person", "{:.1f}"),
             ("pipelined wait (stream)", "wait_ms_stream", "{:.1f}"),
             ("**fps, stream (pipelined)**", "fps_stream", "**{:.1f}**"),
             ("fps, evopose-infer (video + JSON written)", "fps_cli", "{:.1f}")]
    for title, key, fmt in extra:
        lines.append(f"| {title} | " + " | ".join(fmt.format(r[key]) for r in rows) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--video", default=str(REPO / ".samples" / "vtest.avi"))
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--rounds", type=int, default=1, help="alternating repetitions per variant")
    p.add_argument("variants", nargs="*", default=["--fast"],
                   help="evopose-infer flag strings, one per variant (quote each, after --), "
                        "optionally LABEL:FLAGS (default: --fast)")
    p.add_argument("--root", action="append", default=[],
                   help="LABEL=PATH: run the variants labelled LABEL with the evopose_sdk of "
                        "PATH (e.g. before=/tmp/before and the variant 'before:--model ...')")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    p.add_argument("--follow", action="store_true",
                   help="instead: agreement of detect-every 5 / 10 (keypoint-following crops) "
                        "with detecting on every frame, for the first variant's model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.follow:
        flags = args.variants[0].partition(":")[2] or args.variants[0]
        rows = follow_agreement(flags, args.video, args.frames)
        for r in rows:
            print(json.dumps(r))
        if args.json is not None:
            from evopose_sdk.atomic import atomic_write_text

            atomic_write_text(args.json, json.dumps(rows, indent=2))
        return 0
    roots = dict(r.split("=", 1) for r in args.root)
    specs = []
    for v in args.variants:
        label, _, flags = v.partition(":") if ":" in v.split(" ")[0] else ("", "", v)
        specs.append((label or flags, flags, Path(roots.get(label, REPO))))
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in specs}
    for rnd in range(args.rounds):
        for label, flags, root in specs:
            row = _in_subprocess(flags, args.video, args.frames, root)
            row["label"] = label
            runs[label].append(row)
            log.info("round %d %s: %.1f fps stream, %.1f fps cli, serial %.1f ms", rnd, label,
                     row["fps_stream"], row["fps_cli"], row["serial_total_ms"])
    rows = [_mean_rows(runs[label]) for label, _, _ in specs]
    text = markdown(rows)
    print(text)
    if args.json is not None:
        from evopose_sdk.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
