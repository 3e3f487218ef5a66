"""``evopose-infer`` in a subprocess on bad input, bad arguments and unusable output paths:
one line naming the problem, exit 1 or 2, no traceback and no output left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import pytest
from _video_helpers import files_under, random_pose_model, run_infer, sample


@pytest.fixture(scope="module")
def model():
    return random_pose_model("XS")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "source not found"),
    (lambda d: (d / "fake.mp4").write_text("just text, renamed to .mp4") and d / "fake.mp4",
     "cannot read video"),
    (lambda d: (d / "nothing").mkdir() or d / "nothing", "no images"),
])
def test_bad_input_exits_1_with_one_line_and_no_output(model, tmp_path, make, message):
    src = make(tmp_path)
    out = tmp_path / "out"
    proc = run_infer([src, "--model", model, "--output", out])
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0] and str(src.name) in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or files_under(out) == []


def test_missing_model_exits_2(tmp_path):
    """A bad --model is a bad argument: exit 2, as the README says (was 1)."""
    proc = run_infer([sample("demo.mp4"), "--model", tmp_path / "nope.onnx", "--output", tmp_path])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope.onnx" in proc.stderr
    assert files_under(tmp_path) == []


def test_bad_model_file_leaves_no_output_folder(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    proc = run_infer([sample("zidane.jpg"), "--model", junk, "--output", tmp_path / "new" / "out"])
    assert proc.returncode == 2 and "junk.onnx" in proc.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "evopose2d-q"], "no model named 'evopose2d-q'"),
    (["--detector", "yolo"], "unknown detector 'yolo'"),
    (["--detector", "/nonexistent/yolo11n.onnx"], "yolo11n.onnx"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_every_bad_argument_exits_2_with_no_traceback(args, message, tmp_path):
    """Was: a bad --detector or --model exited 1, and --detector yolo told a CLI user to
    pass "an object with detect(image_bgr)"."""
    proc = run_infer([sample("zidane.jpg"), *args, "--output", tmp_path / "out"])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "object" not in proc.stderr
    assert not (tmp_path / "out").exists()


def _moov_less_mp4(folder: Path) -> Path:
    """An mp4 cut before its index (OpenCV writes the moov atom last): FFmpeg says
    'moov atom not found' on stderr when it is opened."""
    bus = cv2.imread(str(sample("bus.jpg")))
    whole = folder / "whole.mp4"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 30, bus.shape[1::-1])
    for _ in range(5):
        writer.write(bus)
    writer.release()
    cut = folder / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    return cut


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "text.jpg").write_text("not an image") and d / "text.jpg",
     "cannot decode image"),
    (lambda d: (d / "empty.jpg").write_bytes(b"") or d / "empty.jpg", "empty (0 bytes)"),
    (lambda d: (d / "f").mkdir() or (d / "f" / "a.jpg").write_bytes(b"") or d / "f",
     "none of the 1 image(s) in"),
    (_moov_less_mp4, "cannot read video"),
    (lambda d: "97", "cannot open webcam 97"),
])
def test_bad_sources_say_their_own_reason_in_one_line(make, message, tmp_path):
    """Was: 'none of the 1 image(s) in bad/text.jpg can be read' for any unreadable image,
    and FFmpeg's 'moov atom not found' / OpenCV's camera messages on the terminal."""
    src = make(tmp_path)
    proc = run_infer([src, "--model", "evopose2d-s-160_int8", "--output", tmp_path / "out"])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    if message.startswith("none of"):
        assert "empty (0 bytes)" in lines[0]  # the folder's files with their reasons


def _can_create_file_in(folder: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _unwritable_folder(tmp_path: Path) -> Path:
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    if _can_create_file_in(ro):  # root ignores file modes; sysfs refuses new files even to root
        ro = Path("/sys/kernel")
        if not ro.is_dir() or _can_create_file_in(ro):
            pytest.skip("no folder this user cannot write to")
    return ro


@pytest.mark.parametrize("where, message", [
    (lambda d: (d / "taken").write_text("x") and d / "taken", "is a file, not a folder"),
    (lambda d: (d / "taken").write_text("x") and d / "taken" / "sub", "Not a directory"),
    (_unwritable_folder, "cannot write"),
])
def test_unusable_output_path_is_named_in_one_line(tmp_path, where, message):
    out = where(tmp_path)
    proc = run_infer([sample("zidane.jpg"), "--model", "evopose2d-s-160_int8", "--detector", "none",
                      "--output", out])
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0] and str(out) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and ".tmp" not in proc.stderr  # no temp names
