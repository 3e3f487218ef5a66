"""The README as a new user meets it: its Python example runs as written, the webcam example
fails cleanly without a camera, and the licence of the code and of every shipped model file
is stated in the README and the package metadata."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

from _video_helpers import REPO, sample

README = (REPO / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def test_readme_python_example_runs_as_written(tmp_path):
    """From a folder holding the fetched samples (as the repo root does after the first
    README command); the example writes into its named output folder, evopose_out/, only."""
    code = re.search(r"```python\n(.*?)```", _section("Python"), re.S).group(1)
    for name in re.findall(r"\.samples/([\w.]+)", code):
        sample(name)  # fails naming the fetch command when a sample is missing
    (tmp_path / ".samples").symlink_to(REPO / ".samples")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"\(\d+, 4\) \(\d+, 17, 3\)", lines[0]), lines[:2]
    assert lines[1] == "(17, 3)"  # one person: the person axis dropped
    assert len(lines) == 2 + 30  # one line of track ids per streamed frame
    # nothing written beside the samples: the picture and the JSON are in evopose_out/
    assert sorted(p.name for p in tmp_path.iterdir()) == [".samples", "evopose_out"]
    out = tmp_path / "evopose_out"
    assert sorted(p.name for p in out.iterdir()) == ["bus_pose.jpg", "bus_pose.json"]
    assert (out / "bus_pose.jpg").stat().st_size > 0
    assert json.loads((out / "bus_pose.json").read_text())["people"]


def test_readme_documents_the_api_a_user_reaches_for():
    python = _section("Python")
    for name in ("available_models()", "plot()", "save(path)", "show()", "to_supervision()",
                 "to_coco(", "device=", "--list-models", "Defaults by source"):
        assert name in python, name


def test_webcam_example_without_a_camera_says_so_in_one_line():
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "webcam_demo.py"),
                           "--camera", "97", "--model", "evopose2d-s-128_int8"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "webcam_demo: cannot open webcam 97", proc.stderr


def test_licence_of_code_and_of_every_shipped_model_file_is_stated():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert "Apache-2.0" in meta and "research" in meta and "NOT Apache-2.0" in meta
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in \
        (REPO / "LICENSE").read_text()
    licence = _section("Licence")
    assert "**Apache-2.0**" in licence and "non-commercial research only" in licence
    shipped = sorted(p for p in (REPO / "models").iterdir() if p.suffix in (".onnx", ".tflite"))
    assert shipped
    for path in shipped:
        assert path.name in licence, f"README's Licence section does not name {path.name}"
        card = json.loads(path.with_name(path.name + ".json").read_text())
        assert "research-use only" in card["training_data"]["licence_note"], path.name
