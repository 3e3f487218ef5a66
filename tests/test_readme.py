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
                           "--camera", "97", "--model", "evopose2d-s-160_int8"],
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


def test_readme_is_short_and_its_links_resolve():
    """The README is for users (well under 300 lines); the history, the measurements and the
    developer notes live in docs/, which it links: every relative link points at a file."""
    assert len(README.splitlines()) < 300
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert {"docs/training.md", "docs/training-history.md", "docs/benchmarks.md",
            "docs/architecture.md"} <= set(links)
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / link).exists(), f"{doc.relative_to(REPO)} links {link}"


def test_no_tracker_numbers_in_the_readme_or_docs():
    for doc in [REPO / "README.md", REPO / "benchmarks" / "README.md",
                *sorted((REPO / "docs").rglob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        found = re.findall(r"\bissues?[ -]#?\d+|#\d+\b", text, re.I)
        assert not found, f"{doc.relative_to(REPO)}: {found}"


def _cards() -> dict[str, dict]:
    return {p.name[:-len(".json")]: json.loads(p.read_text())
            for p in (REPO / "models").glob("*.json") if not p.name.endswith(".parity.json")}


def test_readme_models_table_matches_the_cards():
    """Each shipped pose file is a row of the README's models table, and its AP with
    ground-truth and with detector boxes (flip on, dark decoding) are its card's."""
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"^\| `([\w.-]+)`[^|]*\|(.*)$", _section("Models"), re.M)}
    cards = _cards()
    assert cards
    for name, card in cards.items():
        assert name in rows, f"README's models table has no row for {name}"
        cells = [c.strip() for c in rows[name].split("|")]
        ap = {r["boxes"]: r["AP"] for r in card["metrics"]["dev_val"]["rows"]
              if r["flip"] and r.get("decode", "dark") == "dark"}
        assert cells[2] == f"{ap['gt']:.3f}", (name, cells)
        assert cells[3] == f"{ap['detector']:.3f}", (name, cells)
        assert cells[-2] == "research use only"
        assert "research-use only" in card["training_data"]["licence_note"]


def test_moved_measurements_are_in_the_docs():
    """The training history and the measured tables left the README for docs/, intact: the
    learning curve, the int8 table, the per-file accuracy table, the speed table of modes."""
    history = (REPO / "docs" / "training-history.md").read_text(encoding="utf-8")
    assert "| 12.60 | 12: step 2,400 (end of its cosine; not shipped) | 0.237 |" in history
    assert "| **stage 11 (QAT of stages 8 and 10), shipped** | **least error** | **0.232** |" \
        in history
    bench = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert "python benchmarks/bench_runtime.py --frames 150 --skip pose,yolo" in bench
    assert "| evopose2d-s_int8.tflite (default) | ground truth | on | 0.230 |" in bench
    assert "| **fast** (`--fast`) | evopose2d-s-160_int8.tflite | off | 5 | 0.135 |" in bench
    training = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    assert "evopose-train --config s --data ../shared/data" in training
    assert "@register_step" in training
