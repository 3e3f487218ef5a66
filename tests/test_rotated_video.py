"""Phone videos carry a rotation flag: keypoints come out in the upright frame and
the written video is upright, with no flag left for a player to apply twice. The phone video
is demo.mp4 with ffmpeg's rotate=90 flag (Debian's ffmpeg; the test skips without it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from _video_helpers import sample
from test_video_output import FAST, _cli


@pytest.fixture(scope="module")
def phone_video(tmp_path_factory) -> Path:
    """demo.mp4's first second with a rotation flag of 90 degrees, as a phone records
    portrait video (the pixels stay landscape; the player turns them)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("no ffmpeg here: `apt-get install -y ffmpeg` (Debian; .ci/run installs it)")
    out = tmp_path_factory.mktemp("phone") / "phone.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-i", sample("demo.mp4"), "-t", "1",
                    "-c", "copy", "-metadata:s:v:0", "rotate=90", out], check=True)
    return out


def _ffmpeg_upright_frames(video: Path, folder: Path, n: int) -> list[np.ndarray]:
    """The first ``n`` frames as ffmpeg's player shows them (it applies the rotation flag)."""
    folder.mkdir()
    subprocess.run([shutil.which("ffmpeg"), "-v", "error", "-i", video, "-frames:v", str(n),
                    folder / "%03d.png"], check=True)
    return [cv2.imread(str(p)) for p in sorted(folder.glob("*.png"))]


def test_rotated_phone_video_gives_keypoints_in_the_upright_frame(phone_video, tmp_path):
    from evopose_sdk import PoseEstimator

    upright = _ffmpeg_upright_frames(phone_video, tmp_path / "up", 2)
    assert upright[0].shape == (1768, 994, 3)  # portrait
    with PoseEstimator("evopose2d-s-160_int8", threads=2, detector="whole-image") as est:
        streamed = list(est.stream(phone_video, max_frames=2, smoothing=False, detect_every=1))
        for (frame, people), up in zip(streamed, upright, strict=True):
            np.testing.assert_array_equal(frame, up)  # the frame is the upright picture
            alone = est.estimate_detections(up, *est.detect(up), flip_test=False)
            np.testing.assert_array_equal(people.keypoints, alone.keypoints)
            assert people.image_hw == (1768, 994)


def test_rotated_phone_video_is_written_upright(phone_video, tmp_path):
    out = tmp_path / "out"
    proc = _cli([phone_video, *FAST, "-q", "--detector", "none", "--output", out])
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = out / "phone_pose.mp4"
    records = [json.loads(x) for x in (out / "phone_pose.jsonl").read_text().splitlines()]
    assert all(r["image_hw"] == [1768, 994] for r in records)
    # the written file holds upright pixels and no rotation flag: every player shows it so
    probe = subprocess.run([shutil.which("ffprobe"), "-v", "error", "-select_streams", "v:0",
                            "-show_entries", "stream=width,height:stream_side_data=rotation",
                            "-of", "json", written], capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (994, 1768)
    assert not any("rotation" in d and d["rotation"] for d in stream.get("side_data_list", []))
    shown = _ffmpeg_upright_frames(written, tmp_path / "shown", 1)[0]
    source = _ffmpeg_upright_frames(phone_video, tmp_path / "src", 1)[0]
    # the annotated frame is the upright source plus drawing (whole-image box, skeleton):
    # most pixels agree; the source turned the other way would not
    assert np.median(np.abs(shown.astype(int) - source).max(axis=2)) < 8
    assert np.median(np.abs(shown.astype(int) - source[::-1, ::-1]).max(axis=2)) > 20
