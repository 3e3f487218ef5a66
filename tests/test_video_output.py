"""The annotated video a user gets: H.264 that a real browser (Debian's headless
chromium) plays, no larger than 1.5x the source, and mp4v with a warning without PyAV. Real
video: all 230 frames of demo.mp4 through evopose-infer."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _video_helpers import REPO, sample

FAST = ["--model", "evopose2d-s-160_int8", "--threads", "2"]


def _cli(args: list, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evopose_sdk.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _codec(path: Path) -> str:
    av = pytest.importorskip("av", reason="PyAV not installed: pip install 'evopose-sdk[video]'")
    with av.open(str(path)) as container:
        return container.streams.video[0].codec_context.name


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium here: `apt-get install -y chromium` (Debian; .ci/run installs it)")


_PAGE = """<!doctype html><html><body><video id="v" muted autoplay playsinline
src="{video}"></video><pre id="out"></pre><script>
const v = document.getElementById('v'), out = document.getElementById('out'), seen = [];
const note = (what) => seen.push(what);
v.addEventListener('error', () => note({{error: v.error ? v.error.code : -1}}));
v.play().catch((e) => note({{play: String(e)}}));
for (const ms of [500, 1500, 3000, 4500]) setTimeout(() => note({{ms, t: v.currentTime,
    ready: v.readyState, w: v.videoWidth, h: v.videoHeight}}), ms);
setTimeout(() => {{ out.textContent = 'RESULT' + JSON.stringify(seen) + 'END'; }}, 4800);
</script></body></html>"""


def play_in_chromium(video: Path) -> list[dict]:
    """Open a page with a <video> element on ``video`` in headless Chromium; what it saw:
    errors, and currentTime / readyState / size at 0.5, 1.5, 3 and 4.5 s."""
    page = video.with_name(video.stem + "_page.html")
    page.write_text(_PAGE.format(video=video.name))
    proc = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files",
         f"--user-data-dir={video.parent / 'chromium-profile'}",
         "--virtual-time-budget=6000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "RESULT" in dom, f"chromium gave no result (rc {proc.returncode}): {proc.stderr[-800:]}"
    return json.loads(dom.split("RESULT", 1)[1].split("END", 1)[0])


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory) -> Path:
    """``evopose-infer demo.mp4`` (all 230 frames, S-128 int8) as a user runs it."""
    from evopose_sdk.writers import h264_available

    if not h264_available():
        pytest.skip("PyAV with libx264 not installed: pip install 'evopose-sdk[video]'")
    out = tmp_path_factory.mktemp("h264")
    proc = _cli([sample("demo.mp4"), *FAST, "-q", "--output", out])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip() == "", proc.stderr  # no fallback warning, no FFmpeg noise
    return out / "demo_pose.mp4"


def test_the_annotated_video_is_h264_no_larger_than_1_5x_the_source(demo_output):
    """Was: mp4v (FOURCC FMP4), 15 MB for the 4 MB source."""
    assert _codec(demo_output) == "h264"
    cap = cv2.VideoCapture(str(demo_output))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert frames == 230
    ratio = demo_output.stat().st_size / sample("demo.mp4").stat().st_size
    assert ratio <= 1.5, f"{ratio:.2f}x the source"


def test_a_real_browser_plays_it(demo_output, tmp_path):
    """Headless Chromium: the <video> element plays the file and its currentTime advances;
    the mp4v file the old writer made is refused (MEDIA_ERR_SRC_NOT_SUPPORTED = 4)."""
    seen = play_in_chromium(demo_output)
    errors = [s for s in seen if "error" in s or "play" in s]
    samples = [s for s in seen if "t" in s]
    assert not errors, seen
    assert (samples[-1]["w"], samples[-1]["h"]) == (1768, 994) and samples[-1]["ready"] >= 2, seen
    times = [s["t"] for s in samples]
    # currentTime advances: it plays (a loaded machine may start it late, not at all is a fail)
    assert times[-1] > 0 and times == sorted(times) and len(set(times)) >= 2, seen

    old = tmp_path / "old_mp4v.mp4"  # what cv2's mp4v writer made before
    cap = cv2.VideoCapture(str(demo_output))
    ok, frame = cap.read()
    cap.release()
    writer = cv2.VideoWriter(str(old), cv2.VideoWriter_fourcc(*"mp4v"), 30, frame.shape[1::-1])
    for _ in range(30):
        writer.write(frame)
    writer.release()
    seen = play_in_chromium(old)
    assert {"error": 4} in seen, seen


def test_without_pyav_the_writer_falls_back_to_mp4v_with_a_warning(tmp_path, monkeypatch,
                                                                     caplog):
    from evopose_sdk import writers

    monkeypatch.setattr(writers, "h264_available", lambda: False)
    frame = cv2.imread(str(sample("bus.jpg")))
    with caplog.at_level(logging.WARNING, logger="evopose_sdk"):
        with writers.AtomicVideoWriter(tmp_path / "out.mp4", 30) as w:
            for _ in range(3):
                w.write(frame)
    assert w.codec == "mp4v" and "evopose-sdk[video]" in caplog.text
    assert "browsers" in caplog.text
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    cap.release()
    assert fourcc.lower() in ("mp4v", "fmp4")


def test_odd_sized_frames_are_written_as_h264(tmp_path):
    from evopose_sdk.writers import AtomicVideoWriter, h264_available

    if not h264_available():
        pytest.skip("PyAV with libx264 not installed: pip install 'evopose-sdk[video]'")
    frame = cv2.imread(str(sample("zidane.jpg")))[:301, :401]
    with AtomicVideoWriter(tmp_path / "odd.mp4", 25) as w:
        for _ in range(5):
            w.write(frame)
    assert w.codec == "h264" and _codec(tmp_path / "odd.mp4") == "h264"
    cap = cv2.VideoCapture(str(tmp_path / "odd.mp4"))
    ok, back = cap.read()
    cap.release()
    assert ok and back.shape == (302, 402, 3)  # one black row and column added
    assert np.abs(back[:301, :401].astype(int) - frame).mean() < 6
