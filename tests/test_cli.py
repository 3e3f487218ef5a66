"""``evopose-infer`` in a subprocess on real media: outputs, usage errors, bad input, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _video_helpers import REPO, random_pose_model, sample

from evopose_sdk.cli import build_parser, main


def _run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "evopose_sdk.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def model():
    return random_pose_model("XS")


def _files(d: Path) -> list[str]:
    """Everything under ``d`` (hidden temp files included), relative names."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


# --------------------------------------------------------------------------- parsing


def test_help_documents_every_option():
    proc = _run(["--help"])
    assert proc.returncode == 0
    for action in build_parser()._actions:
        for opt in action.option_strings:
            assert opt in proc.stdout, opt
        if action.option_strings:
            assert action.help, f"{action.option_strings} has no help text"
    assert "_pose.jsonl" in proc.stdout  # outputs are documented


@pytest.mark.parametrize("argv, expected", [
    (["x.mp4", "--detect-evry", "3"], "did you mean --detect-every"),
    (["x.mp4", "--no-flp"], "did you mean --no-flip"),
    (["x.mp4", "--max-frame=5"], "did you mean --max-frames"),
    (["x.mp4", "--detect"], "did you mean --detector"),  # no abbreviations
    (["x.mp4", "y.mp4"], "only one SOURCE"),
    (["x.mp4", "--detect-every", "0"], "must be >= 1"),
    (["x.mp4", "--show-threshold", "2"], "must be in [0, 1]"),
    (["x.mp4", "--backend", "tensorrt"], "invalid choice"),
    ([], "SOURCE"),
])
def test_usage_errors_exit_2_with_hint(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- real runs


def test_cli_on_real_video_writes_playable_video_and_json_lines(model, tmp_path):
    src = sample("demo.mp4")
    proc = _run([src, "--model", model, "--max-frames", "20", "--detect-every", "2",
                 "--threads", "2", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr  # the card says trained=false
    assert "frame/s" in proc.stderr  # tqdm progress with the rate
    out = tmp_path / "out"
    assert _files(out) == ["demo_pose.jsonl", "demo_pose.mp4"]  # no temp files left

    cap = cv2.VideoCapture(str(out / "demo_pose.mp4"))
    assert cap.isOpened()
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert size == (1768, 994)
    n_read = 0
    while cap.read()[0]:
        n_read += 1
    cap.release()
    assert n_read == 20

    lines = (out / "demo_pose.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(20))
    assert records[1]["time_s"] == pytest.approx(1 / 30, abs=1e-3)
    assert all(r["image_hw"] == [994, 1768] for r in records)
    people = [p for r in records for p in r["people"]]
    assert people, "the detector found nobody in 20 frames"
    for p in people:
        kp = np.asarray(p["keypoints"], np.float64)
        assert kp.shape == (17, 3) and np.isfinite(kp).all()
        assert len(p["box_xyxy"]) == 4 and isinstance(p["track_id"], int)
    assert any(p["track_id"] >= 1 for p in people)  # tracked


def test_cli_image_folder_and_single_image(model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(sample(name), folder / name)
    proc = _run([folder, "--model", model, "--no-flip", "--no-track"])
    assert proc.returncode == 0, proc.stderr
    # default outputs: next to the source folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "photos_pose", "photos_pose.jsonl"]
    assert sorted(p.name for p in (tmp_path / "photos_pose").iterdir()) == ["bus.jpg", "zidane.jpg"]
    drawn = cv2.imread(str(tmp_path / "photos_pose" / "bus.jpg"))
    assert drawn.shape == cv2.imread(str(folder / "bus.jpg")).shape
    records = [json.loads(x) for x in (tmp_path / "photos_pose.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["bus.jpg", "zidane.jpg"]
    assert all(len(r["people"]) >= 1 for r in records)  # people in both photos

    proc = _run([folder / "zidane.jpg", "--model", model, "--no-flip", "--output", tmp_path / "one"])
    assert proc.returncode == 0, proc.stderr
    assert _files(tmp_path / "one") == ["zidane_pose.jpg", "zidane_pose.jsonl"]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "source not found"),
    (lambda d: (d / "fake.mp4").write_text("just text, renamed to .mp4") and d / "fake.mp4",
     "cannot read video"),
    (lambda d: (d / "nothing").mkdir() or d / "nothing", "no images"),
])
def test_bad_input_exits_1_with_one_line_and_no_output(model, tmp_path, make, message):
    src = make(tmp_path)
    out = tmp_path / "out"
    proc = _run([src, "--model", model, "--output", out])
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0] and str(src.name) in errors[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or _files(out) == []


def test_missing_model_exits_1(tmp_path):
    proc = _run([sample("demo.mp4"), "--model", tmp_path / "nope.onnx", "--output", tmp_path])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "nope.onnx" in proc.stderr
    assert _files(tmp_path) == []


def test_ctrl_c_leaves_no_output(model, tmp_path):
    """SIGINT while frames are being processed: exit 130, nothing at the output paths."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "evopose_sdk.cli", str(sample("demo.mp4")), "--model", str(model),
         "--output", str(out), "--no-flip"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=REPO, env=env,
        # a shell's background job starts with SIGINT ignored, and Python then keeps it
        # ignored; restore the default so the CLI sees Ctrl-C as a user's terminal sends it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    deadline = time.monotonic() + 120
    try:
        while b" 2/230" not in seen and b" 3/230" not in seen:  # a few frames are done
            chunk = proc.stderr.read1(4096)
            if not chunk or time.monotonic() > deadline:
                pytest.fail(f"CLI ended or stalled before processing frames: {seen[-500:]!r}")
            seen += chunk
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (seen + rest)[-800:]
    assert b"interrupted" in rest and b"Traceback" not in seen + rest
    assert _files(out) == []  # the temp video and JSON lines were removed
