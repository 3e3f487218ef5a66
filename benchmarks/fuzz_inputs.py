#!/usr/bin/env python3
"""Fuzzed input: corrupted images and videos through the API and the CLI.

Seed files are made from the real samples (``python tools/fetch_samples.py``): bus.jpg and
zidane.jpg re-encoded small as JPEG, PNG, BMP, WebP and TIFF, and 8 frames of demo.mp4 as an
MP4 (mp4v) and an AVI (MJPG) clip. Each case mutates one seed: truncation, bit flips, a
random header, a zeroed or inserted chunk, junk after the end, another format's bytes (or
text) under the extension, empty and one-byte files, width/height fields patched to 0 or to
huge values (PNG IHDR with its CRC, JPEG SOF, BMP header, MP4 sample entry, AVI headers),
real 1x1 and 1x5000 images, and a folder named like an image. Every case goes through

* the API: ``PoseEstimator(...)(path)`` for images, ``est.stream(path, max_frames=3)`` for
  videos: a result or an :class:`~evopose_sdk.EvoPoseError` is fine, any other exception
  is a failure;
* the CLI, ``evopose_sdk.cli.main([path, "--output", DIR, ...])``: exit 0 or 1 is fine, an
  exception escaping it is a failure, and so is a leftover file: a hidden or temp file in
  DIR or next to the source, or any output after exit 1.

Cases run in worker processes, so a crash (a signal from native code) is caught and counted
for the case it hit; a sample of cases also runs as a real ``evopose-infer`` subprocess
(exit 0/1 and no "Traceback" on stderr). Model: the shipped ``evopose2d-s-128_int8`` with the
whole image as the person box (fast; the decoders are what is fuzzed).

    python benchmarks/fuzz_inputs.py                       # 400 cases, seed 0
    python benchmarks/fuzz_inputs.py --cases 1000 --seed 7

Prints a table (outcomes per mutation) and writes ``benchmarks/results/fuzz_inputs.json``.
``tests/test_fuzz.py`` runs a small seeded set of the same cases in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / ".samples"
RESULTS = REPO / "benchmarks" / "results"
MODEL = "evopose2d-s-128_int8"
CLI_ARGS = ["--model", MODEL, "--detector", "none", "--no-flip", "--max-frames", "3", "--quiet"]

IMAGE_MUTATIONS = ("truncate", "bitflip", "header", "zero_chunk", "insert", "junk_after_end",
                   "video_as_image", "text_as_image", "other_format", "empty", "one_byte",
                   "dims_zero", "dims_huge", "tiny_real", "thin_real", "folder")
VIDEO_MUTATIONS = ("truncate", "truncate_head", "bitflip", "header", "zero_chunk",
                   "image_as_video", "text_as_video", "empty", "one_byte", "dims_zero",
                   "dims_huge")


# ----------------------------------------------------------------------------- seeds


def make_seeds(dest: Path) -> dict[str, Path]:
    """Small valid images and clips made from the real samples -> {name: path}."""
    for name in ("bus.jpg", "zidane.jpg", "demo.mp4"):
        if not (SAMPLES / name).is_file():
            raise FileNotFoundError(f"{SAMPLES / name} missing: run `python tools/fetch_samples.py`")
    dest.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for stem in ("bus", "zidane"):
        image = cv2.imread(str(SAMPLES / f"{stem}.jpg"))
        small = cv2.resize(image, (image.shape[1] // 6, image.shape[0] // 6),
                           interpolation=cv2.INTER_AREA)
        for ext in (".jpg", ".png", ".bmp", ".webp", ".tif"):
            ok, buf = cv2.imencode(ext, small)
            if ok:
                seeds[f"{stem}{ext}"] = dest / f"{stem}{ext}"
                seeds[f"{stem}{ext}"].write_bytes(buf.tobytes())
    cap = cv2.VideoCapture(str(SAMPLES / "demo.mp4"))
    frames = []
    while len(frames) < 8:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (frame.shape[1] // 8, frame.shape[0] // 8),
                                 interpolation=cv2.INTER_AREA))
    cap.release()
    for ext, fourcc in ((".mp4", "mp4v"), (".avi", "MJPG")):
        path = dest / f"demo{ext}"
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, (w, h))
        for frame in frames:
            writer.write(frame)
        writer.release()
        seeds[f"demo{ext}"] = path
    return seeds


# ----------------------------------------------------------------------------- mutations


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with_dims(data: bytes, w: int, h: int) -> bytes:
    """A PNG whose IHDR says w x h (CRC fixed, so the decoder believes it)."""
    ihdr = data[16:29]
    return data[:8] + _png_chunk(b"IHDR", struct.pack(">II", w, h) + ihdr[8:]) + data[33:]


def _jpeg_with_dims(data: bytes, w: int, h: int) -> bytes:
    """A JPEG whose first SOF0/SOF2 marker says w x h."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0:
            return data[:i + 5] + struct.pack(">HH", min(h, 65535), min(w, 65535)) + data[i + 9:]
    return data


def _bmp_with_dims(data: bytes, w: int, h: int) -> bytes:
    return data[:18] + struct.pack("<ii", w, h) + data[26:]


def _mp4_with_dims(data: bytes, w: int, h: int) -> bytes:
    """An MP4 whose mp4v sample entry and track header say w x h."""
    out = bytearray(data)
    i = out.find(b"mp4v")
    if i >= 0:
        out[i + 28:i + 32] = struct.pack(">HH", w, h)
    j = out.find(b"tkhd")
    if j >= 0:  # version 0 tkhd: width/height (16.16 fixed) are the last 8 bytes of 84
        out[j + 4 + 76:j + 4 + 84] = struct.pack(">II", w << 16 & 0xFFFFFFFF, h << 16 & 0xFFFFFFFF)
    return bytes(out)


def _avi_with_dims(data: bytes, w: int, h: int) -> bytes:
    out = bytearray(data)
    i = out.find(b"avih")
    if i >= 0:  # MainAVIHeader: dwWidth, dwHeight at offsets 32, 36 of the 56-byte body
        out[i + 8 + 32:i + 8 + 40] = struct.pack("<II", w, h)
    j = out.find(b"strf")
    if j >= 0:  # BITMAPINFOHEADER: biWidth, biHeight at offsets 4, 8
        out[j + 8 + 4:j + 8 + 12] = struct.pack("<ii", w, h)
    return bytes(out)


def _with_dims(data: bytes, ext: str, w: int, h: int) -> bytes:
    return {".png": _png_with_dims, ".jpg": _jpeg_with_dims, ".bmp": _bmp_with_dims,
            ".mp4": _mp4_with_dims, ".avi": _avi_with_dims}[ext](data, w, h)


def _mutate(rng: np.random.Generator, data: bytes, mutation: str, ext: str,
            seeds: dict[str, Path]) -> bytes:
    n = len(data)
    buf = bytearray(data)
    if mutation == "truncate":
        return data[: int(n * rng.uniform(0.02, 0.98))]
    if mutation == "truncate_head":
        return data[: int(rng.integers(16, 2048))]
    if mutation == "bitflip":
        for pos in rng.integers(0, n, int(rng.integers(1, 40))):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf)
    if mutation == "header":
        k = int(rng.integers(4, 64))
        buf[:k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        return bytes(buf)
    if mutation == "zero_chunk":
        start, k = int(rng.integers(0, n)), int(rng.integers(16, 4096))
        buf[start:start + k] = bytes(len(buf[start:start + k]))
        return bytes(buf)
    if mutation == "insert":
        at = int(rng.integers(0, n))
        return data[:at] + rng.integers(0, 256, int(rng.integers(1, 2048)), np.uint8).tobytes() + data[at:]
    if mutation == "junk_after_end":
        return data + rng.integers(0, 256, int(rng.integers(1, 4096)), np.uint8).tobytes()
    if mutation == "video_as_image":
        return seeds["demo.mp4"].read_bytes()
    if mutation == "image_as_video":
        return seeds["bus.jpg"].read_bytes()
    if mutation in ("text_as_image", "text_as_video"):
        return b"this is not what the file name says it is\n" * int(rng.integers(1, 50))
    if mutation == "other_format":
        other = [p for p in seeds.values() if p.suffix not in (ext, ".mp4", ".avi")]
        return other[int(rng.integers(0, len(other)))].read_bytes()
    if mutation == "empty":
        return b""
    if mutation == "one_byte":
        return data[:1]
    if mutation == "dims_zero":
        return _with_dims(data, ext, *[(0, 0), (0, 120), (160, 0)][int(rng.integers(0, 3))])
    if mutation == "dims_huge":
        return _with_dims(data, ext, *[(65535, 65535), (100000, 100000) if ext == ".png" else
                                       (65535, 16), (30000, 30000)][int(rng.integers(0, 3))])
    raise ValueError(f"unknown mutation {mutation!r}")


def make_cases(seed: int, n_images: int, n_videos: int, dest: Path) -> list[dict]:
    """``n_images + n_videos`` corrupted files in ``dest/cases`` -> list of case dicts."""
    rng = np.random.default_rng(seed)
    seeds = make_seeds(dest / "seeds")
    folder = dest / "cases"
    folder.mkdir(parents=True, exist_ok=True)
    image_seeds = [k for k in seeds if not k.endswith((".mp4", ".avi"))]
    video_seeds = ["demo.mp4", "demo.avi"]
    cases = []
    for i in range(n_images + n_videos):
        is_image = i < n_images
        mutation = (IMAGE_MUTATIONS if is_image else VIDEO_MUTATIONS)[
            i % len(IMAGE_MUTATIONS if is_image else VIDEO_MUTATIONS)]
        pool = image_seeds if is_image else video_seeds
        if mutation in ("dims_zero", "dims_huge"):  # formats whose dims we can patch
            pool = [k for k in pool if Path(k).suffix in (".png", ".jpg", ".bmp", ".mp4", ".avi")]
        src = pool[int(rng.integers(0, len(pool)))]
        ext = Path(src).suffix
        path = folder / f"{i:04d}_{mutation}_{Path(src).stem}{ext}"
        if mutation == "folder":
            path.mkdir()
            (path / "inside.txt").write_text("a folder named like an image")
        elif mutation == "tiny_real":
            cv2.imwrite(str(path), np.full((1, 1, 3), 127, np.uint8))
        elif mutation == "thin_real":
            cv2.imwrite(str(path), rng.integers(0, 255, (1, 5000, 3), dtype=np.uint8))
        else:
            path.write_bytes(_mutate(rng, seeds[src].read_bytes(), mutation, ext, seeds))
        cases.append({"id": i, "kind": "image" if is_image else "video", "mutation": mutation,
                      "seed_file": src, "path": str(path)})
    return cases


# ----------------------------------------------------------------------------- checks


def _leftovers(folder: Path, before: set[str]) -> list[str]:
    """Hidden or temp entries in ``folder`` that were not there before."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in before
                  and (p.name.startswith(".") or ".tmp" in p.name))


def check_api(est, case: dict) -> dict:
    from evopose_sdk.errors import EvoPoseError

    path = case["path"]
    try:
        if case["kind"] == "image":
            result = est(path)
            return {"api": "ok", "api_people": len(result)}
        frames = sum(1 for _ in est.stream(path, max_frames=3))
        return {"api": "ok", "api_frames": frames}
    except EvoPoseError as exc:
        return {"api": "error", "api_message": str(exc)[:200]}
    except Exception as exc:  # noqa: BLE001 - what the fuzz test looks for
        return {"api": "FAIL", "api_message": f"{type(exc).__name__}: {str(exc)[:300]}"}


def check_cli(case: dict, out_root: Path) -> dict:
    from evopose_sdk.cli import main

    src = Path(case["path"])
    out = out_root / f"case{case['id']:04d}"
    before = {p.name for p in src.parent.iterdir()}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main([str(src), "--output", str(out), *CLI_ARGS])
    except BaseException as exc:  # noqa: BLE001 - an escaping exception is the failure
        return {"cli": "FAIL", "cli_message": f"uncaught {type(exc).__name__}: {exc}"[:300]}
    row: dict = {"cli_rc": rc}
    problems = []
    left = _leftovers(out, set()) + _leftovers(src.parent, before)
    if left:
        problems.append(f"leftover {left}")
    if rc == 1 and out.exists() and any(out.iterdir()):
        problems.append(f"output after exit 1: {sorted(p.name for p in out.iterdir())}")
    if rc not in (0, 1):
        problems.append(f"exit {rc}")
    row["cli"] = "FAIL" if problems else ("ok" if rc == 0 else "error")
    if problems:
        row["cli_message"] = "; ".join(problems)
    elif rc == 1:
        row["cli_message"] = err.getvalue().strip().splitlines()[-1][:200] if err.getvalue().strip() else ""
    shutil.rmtree(out, ignore_errors=True)
    return row


def check_cli_subprocess(case: dict, out_root: Path) -> dict:
    """One real ``evopose-infer`` process: exit 0/1, no traceback, nothing left behind."""
    src = Path(case["path"])
    out = out_root / f"sub{case['id']:04d}"
    before = {p.name for p in src.parent.iterdir()}
    proc = subprocess.run([sys.executable, "-m", "evopose_sdk.cli", str(src), "--output", str(out),
                           *CLI_ARGS], capture_output=True, text=True, errors="replace",
                          timeout=300, cwd=REPO)
    problems = []
    if proc.returncode not in (0, 1):
        problems.append(f"exit {proc.returncode}")
    if "Traceback" in proc.stderr:
        problems.append("traceback: " + proc.stderr.strip().splitlines()[-1][:200])
    left = _leftovers(out, set()) + _leftovers(src.parent, before)
    if left:
        problems.append(f"leftover {left}")
    shutil.rmtree(out, ignore_errors=True)
    return {"subprocess": "FAIL" if problems else "ok", "subprocess_rc": proc.returncode,
            **({"subprocess_message": "; ".join(problems)} if problems else {})}


def make_estimator():
    from evopose_sdk import PoseEstimator

    return PoseEstimator(MODEL, detector="whole-image", flip_test=False, threads=1)


# ----------------------------------------------------------------------------- runner


def _worker(cases_file: Path, results_file: Path, start: int, out_root: Path) -> None:
    """Check cases from index ``start`` on, one JSON line per case (crash-safe progress)."""
    import logging

    logging.disable(logging.WARNING)  # the CLI's one-line errors are recorded, not printed
    cases = json.loads(cases_file.read_text())
    est = make_estimator()
    with open(results_file, "a", encoding="utf-8") as f:
        for case in cases[start:]:
            f.write(json.dumps({"id": case["id"], "started": True}) + "\n")
            f.flush()
            row = {"id": case["id"], **check_api(est, case), **check_cli(case, out_root)}
            f.write(json.dumps(row) + "\n")
            f.flush()


def run_cases(cases: list[dict], work: Path) -> list[dict]:
    """Check every case in worker processes; a worker that dies marks its case a crash."""
    cases_file, results_file = work / "cases.json", work / "results.jsonl"
    cases_file.write_text(json.dumps(cases))
    results_file.unlink(missing_ok=True)
    out_root = work / "out"
    out_root.mkdir(exist_ok=True)
    done: dict[int, dict] = {}
    start = 0
    while start < len(cases):
        proc = subprocess.run([sys.executable, __file__, "--worker", str(cases_file),
                               "--results-file", str(results_file), "--start", str(start),
                               "--work", str(out_root)], capture_output=True, text=True,
                              errors="replace", cwd=REPO)
        started = None
        for line in results_file.read_text().splitlines():
            row = json.loads(line)
            if row.get("started"):
                started = row["id"]
            else:
                done[row["id"]] = row
                started = None
        if proc.returncode == 0:
            break
        crashed = started if started is not None else start
        done[crashed] = {"id": crashed, "api": "CRASH", "cli": "CRASH",
                         "api_message": f"worker exit {proc.returncode}: "
                                        f"{proc.stderr.strip()[-300:]}"}
        start = crashed + 1
    return [{**case, **done.get(case["id"], {"api": "MISSING", "cli": "MISSING"})}
            for case in cases]


def summarise(rows: list[dict]) -> dict:
    table: dict = defaultdict(Counter)
    for r in rows:
        key = f"{r['kind']}:{r['mutation']}"
        table[key]["cases"] += 1
        for side in ("api", "cli"):
            table[key][f"{side}_{r[side]}"] += 1
        if "subprocess" in r:
            table[key][f"subprocess_{r['subprocess']}"] += 1
    failures = [r for r in rows if "FAIL" in (r["api"], r["cli"], r.get("subprocess"))
                or "CRASH" in (r["api"], r["cli"]) or "MISSING" in (r["api"], r["cli"])]
    return {"by_mutation": {k: dict(v) for k, v in sorted(table.items())},
            "failures": failures}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=400, help="total cases (default: %(default)s)")
    p.add_argument("--video-share", type=float, default=0.3,
                   help="fraction of cases that are videos (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subprocess", type=int, default=20,
                   help="cases also run as a real evopose-infer process (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS / "fuzz_inputs.json")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--results-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(args.worker, args.results_file, args.start, args.work)
        return

    work = Path(tempfile.mkdtemp(prefix="fuzz_inputs_"))
    try:
        n_videos = int(round(args.cases * args.video_share))
        t0 = time.perf_counter()
        cases = make_cases(args.seed, args.cases - n_videos, n_videos, work)
        rows = run_cases(cases, work)
        sub_ids = set(np.random.default_rng(args.seed).choice(
            len(rows), min(args.subprocess, len(rows)), replace=False).tolist())
        for r in rows:
            if r["id"] in sub_ids:
                r.update(check_cli_subprocess(r, work / "out"))
        seconds = time.perf_counter() - t0
        summary = summarise(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ["cases", "api_ok", "api_error", "cli_ok", "cli_error"]
    print(f"| kind:mutation | {' | '.join(cols)} | failures |")
    print("| --- |" + " ---: |" * (len(cols) + 1))
    for key, counts in summary["by_mutation"].items():
        bad = sum(v for k, v in counts.items() if k.endswith(("FAIL", "CRASH", "MISSING")))
        print(f"| {key} | {' | '.join(str(counts.get(c, 0)) for c in cols)} | {bad} |")
    total = Counter()
    for counts in summary["by_mutation"].values():
        total.update(counts)
    print(f"\n{len(rows)} cases ({args.cases - n_videos} images, {n_videos} videos), seed "
          f"{args.seed}, {seconds:.0f} s: API ok {total['api_ok']} / clear error "
          f"{total['api_error']}; CLI exit 0 {total['cli_ok']} / exit 1 {total['cli_error']}; "
          f"{len(sub_ids)} real evopose-infer runs, {total['subprocess_ok']} clean; "
          f"failures (traceback, crash, leftover file): {len(summary['failures'])}")
    for r in summary["failures"]:
        print(f"  FAIL {r['kind']}:{r['mutation']} {Path(r['path']).name}: "
              f"{r.get('api_message', '')} {r.get('cli_message', '')} {r.get('subprocess_message', '')}")
    result = {"benchmark": "fuzz_inputs", "seed": args.seed, "cases": len(rows),
              "images": args.cases - n_videos, "videos": n_videos, "seconds": round(seconds, 1),
              "model": MODEL, "cli_args": CLI_ARGS, "subprocess_runs": len(sub_ids),
              "totals": dict(total), **summary}
    from evopose_sdk.atomic import atomic_write_text

    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
