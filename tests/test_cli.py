"""``evopose-infer`` in a subprocess on real media: parsing, outputs, ``--version`` and
``--list-models``, Ctrl-C. Bad input and its one-line errors: test_cli_errors.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from _video_helpers import (
    REPO,
    demo_mid_run,
    files_under,
    random_pose_model,
    run_infer,
    sample,
)

from evopose_sdk.cli import main
from evopose_sdk.cli_args import build_parser


@pytest.fixture(scope="module")
def model():
    return random_pose_model("XS")


# --------------------------------------------------------------------------- parsing


def test_help_documents_every_option():
    proc = run_infer(["--help"])
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
    (["x.mp4", "y.mp4"], "unrecognized arguments: y.mp4"),
    (["x.mp4", "--detect-every", "0"], "must be >= 1"),
    (["x.mp4", "--show-threshold", "2"], "must be in [0, 1]"),
    (["x.mp4", "--backend", "tensorrt"], "invalid choice"),
    (["x.mp4", "--precision", "int4"], "invalid choice: 'int4'"),
    ([], "SOURCE"),
])
def test_usage_errors_exit_2_with_hint(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_preset_flags_pass_the_preset_and_only_the_options_given():
    """--fast / --accurate name a preset; what the command line gives is passed on top of it
    and nothing else, so the preset and then the estimator's defaults fill the rest (the
    values themselves: tests/test_presets.py)."""
    from evopose_sdk.cli_args import estimator_options

    def options(*flags):
        return estimator_options(build_parser().parse_args(["x.mp4", *flags]))

    assert options() == {"preset": "default", "detector": "default"}
    assert options("--fast") == {"preset": "fast", "detector": "default"}
    assert options("--accurate", "--threads", "1", "--detect-every", "2") == {
        "preset": "accurate", "detector": "default", "threads": 1, "detect_every": 2}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["x.mp4", "--fast", "--accurate"])


def test_flip_options_reach_the_estimator_only_when_given():
    from evopose_sdk.cli_args import estimator_options
    from evopose_sdk.options import PoseEstimatorOptions

    def options(*flags):
        return estimator_options(build_parser().parse_args(["x.mp4", *flags]))

    # not given: PoseEstimator's by-source default (photos flip, video does not)
    assert "flip_test" not in options() and PoseEstimatorOptions().flip_test is None
    assert options("--flip")["flip_test"] is True and options("--no-flip")["flip_test"] is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["x.mp4", "--flip", "--no-flip"])


# --------------------------------------------------------------------------- real runs


def test_default_mode_detects_every_third_video_frame_and_every_image(tmp_path):
    """No flags: on a video the detector runs on frames 0, 3, 6 and crops follow the
    keypoints in between; in an image folder it runs on every image."""
    proc = run_infer([sample("demo.mp4"), "--model", "evopose2d-s-160_int8", "--max-frames", "12",
                      "--no-video", "--output", tmp_path / "video"])
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "video" / "demo_pose.jsonl").read_text()
               .splitlines()]
    detected = [r["speed_ms"]["detect"] > 0 for r in records]
    # off-schedule only where the frame before has nobody to follow (the clip's first
    # frames: the woman walks in)
    assert detected == [i % 3 == 0 or not records[i - 1]["people"] for i in range(12)]
    assert detected.count(False) >= 4, detected  # the crops followed people

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(sample(name), folder / name)
    proc = run_infer([folder, "--model", "evopose2d-s-160_int8", "--no-video",
                      "--output", tmp_path / "images"])
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (tmp_path / "images" / "photos_pose.jsonl").read_text()
               .splitlines()]
    assert len(records) == 2 and all(r["speed_ms"]["detect"] > 0 for r in records)


def test_cli_on_real_video_writes_playable_video_and_json_lines(model, tmp_path):
    src = sample("demo.mp4")
    proc = run_infer([src, "--model", model, "--max-frames", "20", "--detect-every", "2",
                      "--threads", "2", "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "UNTRAINED" in proc.stderr  # the card says trained=false
    assert "frame/s" in proc.stderr  # tqdm progress with the rate
    out = tmp_path / "out"
    assert files_under(out) == ["demo_pose.jsonl", "demo_pose.mp4"]  # no temp files left
    summary = proc.stderr.splitlines()[-1]  # where the outputs went, frames, people, rate
    assert summary.startswith("evopose-infer: 20 of 20 frames, "), summary
    assert "frames/s" in summary and str(out / "demo_pose.mp4") in summary

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
    proc = run_infer([folder, "--model", model, "--no-flip", "--no-track"])
    assert proc.returncode == 0, proc.stderr
    # default outputs: next to the source folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "photos_pose", "photos_pose.jsonl"]
    assert sorted(p.name for p in (tmp_path / "photos_pose").iterdir()) == ["bus.jpg", "zidane.jpg"]
    drawn = cv2.imread(str(tmp_path / "photos_pose" / "bus.jpg"))
    assert drawn.shape == cv2.imread(str(folder / "bus.jpg")).shape
    records = [json.loads(x) for x in (tmp_path / "photos_pose.jsonl").read_text().splitlines()]
    assert [r["file"] for r in records] == ["bus.jpg", "zidane.jpg"]
    assert all(len(r["people"]) >= 1 for r in records)  # people in both photos

    proc = run_infer([folder / "zidane.jpg", "--model", model, "--no-flip", "--output", tmp_path / "one"])
    assert proc.returncode == 0, proc.stderr
    assert files_under(tmp_path / "one") == ["zidane_pose.jpg", "zidane_pose.jsonl"]
    # one image is not tracked: ids are -1, as PoseEstimator gives them, and none is drawn
    record = json.loads((tmp_path / "one" / "zidane_pose.jsonl").read_text())
    assert record["people"] and all(p["track_id"] == -1 for p in record["people"])


def test_warnings_print_above_the_progress_bar_and_skips_are_summarised(model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(sample("bus.jpg"), folder / "a_bus.jpg")
    (folder / "b_cut.jpg").write_bytes(sample("zidane.jpg").read_bytes()[:5000])
    shutil.copy(sample("zidane.jpg"), folder / "c_zidane.jpg")
    proc = run_infer([folder, "--model", model, "--no-flip", "--detector", "none",
                      "--output", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "2 of 3 frames" in proc.stderr
    warnings = [line for line in proc.stderr.split("\n") if "WARNING" in line]
    assert any("skipping truncated JPEG image" in w and "b_cut.jpg" in w for w in warnings)
    assert any("skipped 1 unreadable file(s)" in w and "b_cut.jpg" in w for w in warnings)
    for line in warnings:  # tqdm.write clears the bar first: the warning owns its line
        assert line.split("\r")[-1].startswith("evopose-infer: "), repr(line)


def test_model_by_file_name_or_name_and_precision_quiet(tmp_path):
    """--model evopose2d-s-160_int8 and --model evopose2d-s-160 --precision int8 run the
    same file; --quiet prints nothing (not even LiteRT's XNNPACK INFO line)."""
    records = []
    for extra in (["--model", "evopose2d-s-160_int8"],
                  ["--model", "evopose2d-s-160", "--precision", "int8"]):
        out = tmp_path / extra[-1]
        proc = run_infer([sample("zidane.jpg"), *extra, "--no-flip", "--quiet", "--output", out])
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "" and proc.stdout == ""
        records.append(json.loads((out / "zidane_pose.jsonl").read_text()))
    for rec in records:
        rec.pop("speed_ms")
    assert records[0] == records[1] and records[0]["people"]
    proc = run_infer([sample("zidane.jpg"), "--model", "evopose2d-s-160_int8", "--no-flip",
                      "--verbose", "--output", tmp_path / "v"])
    assert "XNNPACK" in proc.stderr  # the line is kept, as a log record, under --verbose


def test_version_and_list_models():
    from evopose_sdk import __version__

    proc = run_infer(["--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"evopose-infer (evopose-sdk) {__version__}"
    proc = run_infer(["--list-models"])
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["name", "precision", "file", "MB", "AP", "ms/person", "licence"]
    for name in ("evopose2d-s_int8.tflite", "evopose2d-s.onnx", "evopose2d-s-160_int8.tflite"):
        row = next(r for r in rows if f" {name} " in r)
        assert re.search(r" 0\.\d{3} +\d+\.\d +research use only$", row), row
    assert sum("(default)" in r for r in rows) == 1
    # each preset's file is marked, and each preset's AP and speed are stated
    from evopose_sdk.presets import PRESETS
    from evopose_sdk.registry import resolve_model

    fast = resolve_model(PRESETS["fast"].model, precision=PRESETS["fast"].precision).path.name
    assert f" {fast} " in next(r for r in rows if "(--fast)" in r)
    for name, preset in PRESETS.items():
        assert f"  {name}: {preset.summary}" in rows and "dev_val AP" in preset.summary
    proc = run_infer([])
    assert proc.returncode == 2 and "SOURCE" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_the_frames_done(model, tmp_path, sig):
    """SIGINT or SIGTERM mid-video: exit 130 with a playable video and JSON lines of the
    frames done so far, "N of M frames" said, and no temp file left."""
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
    try:
        while not demo_mid_run(seen):  # a few frames are done (a state, not a clock)
            chunk = proc.stderr.read1(4096)
            if not chunk:
                pytest.fail(f"CLI ended before processing frames: {seen[-500:]!r}")
            seen += chunk
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (seen + rest).decode(errors="replace")
    assert proc.returncode == 130, err[-800:]
    assert "Traceback" not in err
    assert files_under(out) == ["demo_pose.jsonl", "demo_pose.mp4"]  # whole files, no temp files
    records = [json.loads(line) for line in (out / "demo_pose.jsonl").read_text().splitlines()]
    n = len(records)
    assert n >= 2 and [r["frame"] for r in records] == list(range(n))
    assert f"interrupted by {sig.name} after {n} of 230 frames" in err, err[-800:]
    cap = cv2.VideoCapture(str(out / "demo_pose.mp4"))
    n_read = 0
    while cap.read()[0]:
        n_read += 1
    cap.release()
    assert n_read == n
