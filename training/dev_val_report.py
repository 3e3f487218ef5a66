"""COCO keypoint accuracy (AP/AP50/AP75/AR) of model files on the ``dev_val`` split, as a table.

Rows, each evaluated by :mod:`evopose_sdk.training.evaluate_runtime` (the protocol is in its
docstring: 300 people in 110 images of coco128, cocomini_train and tinycoco, pycocotools):

1. each given model file (``.onnx`` / ``.tflite`` with its card ``<file>.json``) through the
   real runtime, :class:`evopose_sdk.PoseEstimator` (``run_ours``):

   * ground-truth boxes, flip test on and off;
   * the default detector (SSD-MobileNetV2), flip test on, detections in ignore regions
     dropped (``det_thresholds``: more rows at other score thresholds);
   * for the first fp32 ONNX file also decoder ``"quarter"`` next to ``"dark"`` (GT boxes,
     flip on), so the better default decoder can be picked.

2. pretrained peers on the same GT boxes (``run_peer``): MoveNet single-pose Lightning (192)
   and Thunder (256) TFLite files from ``bash ../shared/peers/get_peers.sh`` (default
   ``/tmp/peers/models``), on a 1.25x square crop of each box. No flip test.

``ms/person`` = wall time of the runtime call / people posed, on whatever the machine is doing.

    python benchmarks/eval_dev_val.py --models models/evopose2d-s.onnx models/evopose2d-s_int8.tflite \\
        --data ../shared/data --peers /tmp/peers/models
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.training.evaluate_runtime import (
    DEV_SOURCES,
    PEERS,
    SPLIT,
    THREADS,
    load_dev_val,
    run_ours,
    run_peer,
)

log = logging.getLogger(__name__)

#: (model file, boxes "gt"/"detector", flip, decoder, detector score threshold or None)
Run = tuple[Path, str, bool, str, float | None]


def table(rows: list[dict]) -> str:
    """The rows of :func:`dev_val_report` as a Markdown table (AP etc. to 3 decimals)."""
    head = "| model | file | boxes | flip | decoder | AP | AP50 | AP75 | AR | ms/person |"
    lines = [head, "|" + "---|" * 5 + "---:|" * 5]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['file']} | {r.get('boxes', '')} | | | "
                         f"skipped: {r['skipped']} | | | | |")
            continue
        boxes = r["boxes"]
        if r.get("detector_threshold") is not None:
            boxes += f" >={r['detector_threshold']:g}"
        lines.append(f"| {r['model']} | {r['file']} | {boxes} | {'on' if r['flip'] else 'off'}"
                     f" | {r['decode']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | "
                     f"{r['AR']:.3f} | {r['ms_per_person']:.1f} |")
    return "\n".join(lines)


def plan(models: Sequence[Path], quick: bool,
         det_thresholds: Sequence[float] | None = None) -> list[Run]:
    """The runs of :func:`dev_val_report`; decoder comparison and extra detector thresholds
    on the first fp32 ONNX file; ``quick``: GT boxes with flip only."""
    runs: list[Run] = []
    onnx_done = False
    for m in models:
        runs.append((m, "gt", True, "dark", None))
        first_onnx = m.suffix.lower() == ".onnx" and not onnx_done
        if first_onnx:
            runs.append((m, "gt", True, "quarter", None))
            onnx_done = True
        if not quick:
            runs.append((m, "gt", False, "dark", None))
            runs.append((m, "detector", True, "dark", None))
        if first_onnx:
            runs.extend((m, "detector", True, "dark", t) for t in det_thresholds or [])
    return runs


def _rounded(row: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}


def dev_val_report(models: Sequence[str | os.PathLike], data: str | os.PathLike,
                   peers: str | os.PathLike | None = "/tmp/peers/models", quick: bool = False,
                   det_thresholds: Sequence[float] | None = None,
                   quiet: bool = False) -> dict[str, Any]:
    """Evaluate model files (and the MoveNet peers) on dev_val.

    Args:
        models: ``.onnx`` / ``.tflite`` files, each with its card ``<file>.json``.
        data: the shared data folder (``<source>/annotations.json`` + ``images/``).
        peers: folder with ``movenet_{lightning,thunder}.tflite``; None: no peer rows (a
            missing file gives a ``skipped`` row).
        quick: first 20 dev_val images only, GT boxes flip on (+ quarter) only.
        det_thresholds: extra detector rows (flip on) for the first ONNX file.
        quiet: no progress bars.

    Returns:
        The report: split, sources, data, images, people, quick, threads, created, seconds,
        notes and ``rows`` (one dict a run: AP, AP50, AP75, APm, APl, AR, AR50, AR75 in
        [0, 1], ms_per_person and ms_per_image in ms, ...; a run that failed: ``skipped``).

    Raises:
        FileNotFoundError: ``data`` or a model file is missing.
        ValueError: a model file is neither ``.onnx`` nor ``.tflite``.
    """
    data, models = Path(data), [Path(m) for m in models]
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} not found; pass --data "
                                "/path/to/shared/data")
    for m in models:
        if not m.is_file():
            raise FileNotFoundError(f"model file {m} not found")
        if m.suffix.lower() not in (".onnx", ".tflite"):
            raise ValueError(f"{m} is not an .onnx or .tflite file")
    gt = load_dev_val(data)
    if quick:
        gt["images"] = gt["images"][:20]
        keep = {im["id"] for im in gt["images"]}
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
    log.info("dev_val: %d images, %d people (%s)", len(gt["images"]), len(gt["annotations"]),
             ", ".join(f"{s}: {sum(im['source'] == s for im in gt['images'])}"
                       for s in DEV_SOURCES))
    rows: list[dict] = []
    t_start = time.perf_counter()
    for model, boxes, flip, decode, det_t in plan(models, quick, det_thresholds):
        try:
            row = run_ours(model, gt, boxes, flip, decode, quiet, det_t)
        except Exception as exc:  # one broken file must not lose the other rows
            log.error("%s %s flip=%s %s failed: %s", model.name, boxes, flip, decode, exc)
            row = dict(model=model.stem, file=model.name, boxes=boxes, flip=flip, decode=decode,
                       skipped=f"{type(exc).__name__}: {exc}")
        log.info("%s", _rounded(row))
        rows.append(row)
    for name, side in PEERS.items() if peers is not None else ():
        path = Path(peers) / f"{name}.tflite"
        if not path.is_file():
            log.warning("%s not found: run bash ../shared/peers/get_peers.sh", path)
            rows.append(dict(model=name, file=path.name, boxes="gt",
                             skipped=f"{path} missing (run ../shared/peers/get_peers.sh)"))
            continue
        row = run_peer(path, side, gt, data, quiet)
        log.info("%s", _rounded(row))
        rows.append(row)
    return dict(
        split=SPLIT, sources=list(DEV_SOURCES), data=str(data.resolve()),
        images=len(gt["images"]), people=len(gt["annotations"]), quick=quick,
        threads=THREADS, created=dt.datetime.now().isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - t_start, 1),
        notes=["COCOeval iouType=keypoints, default maxDets 20 and area ranges; AR = stats[5]",
               "coco128 areas are mostly bbox*0.53 (no segmentation area in its YOLO labels)",
               "detector rows: detections with centre in an ignore box and IoU<0.5 with every "
               "labelled GT box are dropped; coco128 has no ignore boxes",
               "ms/person = runtime call wall time / people posed; machine shared, timings noisy"],
        rows=rows)


def report_path(results_dir: str | os.PathLike, tag: str | None = None) -> Path:
    """``<results_dir>/eval_dev_val_<tag>.json``; tag default ``<host>_<date-time>``."""
    tag = tag or f"{socket.gethostname()}_{dt.datetime.now():%Y%m%d-%H%M}"
    return Path(results_dir) / f"eval_dev_val_{tag}.json"


def write_report(report: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write a :func:`dev_val_report` as indented JSON (atomically); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", out)
    return out


def main(argv: Sequence[str] | None = None, *, repo: str | os.PathLike | None = None) -> int:
    """``python -m evopose_sdk.training.dev_val_report`` / ``benchmarks/eval_dev_val.py``:
    prints the table, writes the JSON. ``repo``: the checkout whose ``benchmarks/results`` and
    ``../shared/data`` are the defaults (default: the working folder)."""
    repo = Path.cwd() if repo is None else Path(repo)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", type=Path, required=True,
                    help="model files (.onnx / .tflite), each with its card <file>.json")
    ap.add_argument("--data", type=Path, default=repo.parent / "shared" / "data",
                    help="shared data folder (default: ../shared/data from the repo root)")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/peers/models"),
                    help="folder with movenet_{lightning,thunder}.tflite (get_peers.sh)")
    ap.add_argument("--no-peers", action="store_true", help="skip the MoveNet rows")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/eval_dev_val_<tag>.json)")
    ap.add_argument("--tag", default=None, help="tag in the default output name (default: "
                    "host_date)")
    ap.add_argument("--quick", action="store_true",
                    help="first 20 dev_val images only, GT boxes flip on (+ quarter) only")
    ap.add_argument("--detector-thresholds", nargs="+", type=float, default=None,
                    help="extra detector rows (flip on) for the first ONNX file at these "
                         "detector score thresholds")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("evopose_sdk").setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    try:
        report = dev_val_report(args.models, args.data, None if args.no_peers else args.peers,
                                args.quick, args.detector_thresholds, args.quiet)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    print(table(report["rows"]))
    write_report(report, args.out or report_path(repo / "benchmarks" / "results", args.tag))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
