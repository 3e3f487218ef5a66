"""Corrupted images and videos for checking the bad-input contract: a result or a clear
:class:`~evopose_sdk.EvoPoseError` from the API, exit 0 or 1 and no leftover file from the CLI.

Seed files are made from the real samples (``python tools/fetch_samples.py``): bus.jpg and
zidane.jpg re-encoded small as JPEG, PNG, BMP, WebP and TIFF, and 8 frames of demo.mp4 as an
MP4 (mp4v) and an AVI (MJPG) clip. Each case (:func:`make_cases`) mutates one seed:
truncation, bit flips, a random header, a zeroed or inserted chunk, junk after the end,
another format's bytes (or text) under the extension, empty and one-byte files, width/height
fields patched to 0 or to huge values (PNG IHDR with its CRC, JPEG SOF, BMP header, MP4
sample entry, AVI headers), real 1x1 and 1x5000 images, and a folder named like an image.
Checks: :func:`check_api` (``PoseEstimator(...)(path)`` / ``est.stream(path, max_frames=3)``),
:func:`check_cli` (``evopose_sdk.cli.main`` in this process) and :func:`check_cli_subprocess`
(a real ``evopose-infer`` process). Model (:func:`make_estimator`): the shipped
``evopose2d-s-160_int8`` with the whole image as the person box (fast; the decoders are what
is fuzzed).

Used by ``benchmarks/fuzz_inputs.py`` (hundreds of cases in crash-safe worker processes) and
``tests/test_fuzz.py`` (a small seeded set in CI).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np

MODEL = "evopose2d-s-160_int8"
CLI_ARGS = ["--model", MODEL, "--detector", "none", "--no-flip", "--max-frames", "3", "--quiet"]

IMAGE_MUTATIONS = ("truncate", "bitflip", "header", "zero_chunk", "insert", "junk_after_end",
                   "video_as_image", "text_as_image", "other_format", "empty", "one_byte",
                   "dims_zero", "dims_huge", "tiny_real", "thin_real", "folder")
VIDEO_MUTATIONS = ("truncate", "truncate_head", "bitflip", "header", "zero_chunk",
                   "image_as_video", "text_as_video", "empty", "one_byte", "dims_zero",
                   "dims_huge")


# ----------------------------------------------------------------------------- seeds


def make_seeds(dest: Path, samples: Path) -> dict[str, Path]:
    """Small valid images and clips made from the real samples (``bus.jpg``, ``zidane.jpg``,
    ``demo.mp4`` in ``samples``) -> {name: path}."""
    for name in ("bus.jpg", "zidane.jpg", "demo.mp4"):
        if not (samples / name).is_file():
            raise FileNotFoundError(f"{samples / name} missing: run `python tools/fetch_samples.py`")
    dest.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for stem in ("bus", "zidane"):
        image = cv2.imread(str(samples / f"{stem}.jpg"))
        small = cv2.resize(image, (image.shape[1] // 6, image.shape[0] // 6),
                           interpolation=cv2.INTER_AREA)
        for ext in (".jpg", ".png", ".bmp", ".webp", ".tif"):
            ok, buf = cv2.imencode(ext, small)
            if ok:
                seeds[f"{stem}{ext}"] = dest / f"{stem}{ext}"
                seeds[f"{stem}{ext}"].write_bytes(buf.tobytes())
    cap = cv2.VideoCapture(str(samples / "demo.mp4"))
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


def make_cases(seed: int, n_images: int, n_videos: int, dest: Path, samples: Path
               ) -> list[dict]:
    """``n_images + n_videos`` corrupted files in ``dest/cases``, from seeds made of the real
    samples in ``samples`` -> list of case dicts."""
    rng = np.random.default_rng(seed)
    seeds = make_seeds(dest / "seeds", samples)
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


def check_cli_subprocess(case: dict, out_root: Path, cwd: Path | None = None) -> dict:
    """One real ``evopose-infer`` process (in ``cwd``): exit 0/1, no traceback, nothing left
    behind."""
    src = Path(case["path"])
    out = out_root / f"sub{case['id']:04d}"
    before = {p.name for p in src.parent.iterdir()}
    proc = subprocess.run([sys.executable, "-m", "evopose_sdk.cli", str(src), "--output", str(out),
                           *CLI_ARGS], capture_output=True, text=True, errors="replace",
                          timeout=300, cwd=cwd)
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
