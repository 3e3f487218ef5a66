"""The shell the four ``evopose-*`` commands share (``evopose_sdk.cli_shell``), each command in
a real subprocess: typo hints, no abbreviations, exit codes 2 / 1 / 130, one-line errors;
every error class under ``EvoPoseError``; environment defaults set in one place."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from _search_helpers import DATA, needs_data, tiny_config
from _video_helpers import REPO, demo_mid_run, sample

from evopose_sdk.errors import EvoPoseError

ENV = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3",
           TF_ENABLE_ONEDNN_OPTS="0", KERAS_BACKEND="tensorflow")

MODULES = {"evopose-infer": "evopose_sdk.cli", "evopose-export": "evopose_sdk.export.cli",
           "evopose-train": "evopose_sdk.training.cli",
           "evopose-search": "evopose_sdk.training.search.cli"}
COMMANDS = list(MODULES)


def _argv(command: str, *args) -> list[str]:
    return [sys.executable, "-m", MODULES[command], *map(str, args)]


def _run(command: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_argv(command, *args), capture_output=True, text=True, cwd=REPO,
                          env=ENV, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.search(r": (ERROR|error): ", line)]


def test_entry_points_are_the_four_commands():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {name: f"{module}:main" for name, module in MODULES.items()}


# ----------------------------------------------------------------------------- usage: exit 2

# (command, arguments before the bad option, bad option, the option the hint names)
TYPOS = [
    ("evopose-infer", ["x.mp4"], "--no-flp", "--no-flip"),
    ("evopose-export", ["--size", "S"], "--formts", "--formats"),
    ("evopose-train", [], "--confg", "--config"),
    ("evopose-search", ["run", "d", "--config", "c.json"], "--exectuor", "--executor"),
    ("evopose-search", [], "--hlep", "--help"),  # before the sub-command
]
ABBREVIATIONS = [
    ("evopose-infer", ["x.mp4"], "--max-fr", "--max-frames"),
    ("evopose-export", ["--size", "S"], "--n-par", "--n-parity"),
    ("evopose-train", [], "--max-st", "--max-steps"),
    ("evopose-search", ["run", "d", "--config", "c.json"], "--work", "--workers"),
]


@pytest.mark.parametrize("command, before, option, meant",
                         TYPOS + ABBREVIATIONS, ids=[f"{t[0]}{t[2]}" for t in TYPOS + ABBREVIATIONS])
def test_unknown_or_abbreviated_option_exits_2_naming_the_option_meant(command, before, option,
                                                                          meant):
    proc = _run(command, *before, option, "3", timeout=120)
    assert proc.returncode == 2, proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert f"unrecognized option {option}; did you mean {meant}?" in line, proc.stderr
    assert "Traceback" not in proc.stderr


def test_quiet_and_verbose_are_the_same_options_everywhere():
    for command in COMMANDS:
        sub = ["run"] if command == "evopose-search" else []
        out = _run(command, *sub, "--help", timeout=120).stdout
        assert "-q, --quiet" in out and "-v, --verbose" in out, (command, out)


# ----------------------------------------------------------------------- runtime failure: 1


@pytest.mark.parametrize("command", COMMANDS)
def test_runtime_failure_exits_1_with_one_line_and_no_traceback(command, tmp_path):
    missing = tmp_path / "missing"
    args, message = {
        "evopose-infer": ([f"{missing}.mp4"], "source not found"),
        "evopose-export": ([f"{missing}.keras", "--out", tmp_path / "out"],
                           "checkpoint not found"),
        "evopose-train": (["--config", "xs", "--out", missing, "--resume", "must"],
                          "no run to resume"),
        "evopose-search": (["resume", missing], "holds no search"),
    }[command]
    proc = _run(command, *args)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (line,) = _error_lines(proc.stderr)
    assert line.startswith(f"{command}: ERROR: ") or f" {command}: ERROR: " in line, line
    assert message in line and str(missing) in line, line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_verbose_adds_the_traceback(tmp_path):
    proc = _run("evopose-infer", tmp_path / "missing.mp4", "--verbose")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


# ----------------------------------------------------------------------- interrupted: 130


def _interrupt(cmd: list[str], ready, sig: int = signal.SIGINT,
               group: bool = False, attempts: int = 3) -> tuple[int, str, int]:
    """Start ``cmd``, send ``sig`` once ``ready(stderr so far)``, to its whole process group
    with ``group`` (as Ctrl-C or ``kill -- -PGID`` do; the command then leads a session of
    its own); (exit code, stderr, pid).

    The signal follows a state, not a clock; but on a loaded machine this process may be
    scheduled only after the command has finished the little work left after that state
    (a fresh-clone run beside another saw an export finish its TFLite file 4 s after the
    ONNX line, before the signal came). A command that exits 0 never saw the signal while
    it ran: it is started again, up to ``attempts`` times."""
    for _ in range(attempts):
        proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=REPO, env=ENV,
            # a shell's background job starts with SIGINT ignored and Python keeps it so;
            # restore the default, as a terminal's Ctrl-C finds it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            start_new_session=group)
        seen = b""
        try:
            while not ready(seen.decode(errors="replace")):  # a state, not a clock
                chunk = proc.stderr.read1(4096)
                if not chunk:
                    pytest.fail(f"ended before the point to interrupt: {seen[-1500:]!r}")
                seen += chunk
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            _, rest = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            break
    return proc.returncode, (seen + rest).decode(errors="replace"), proc.pid


def _train_args(out: Path) -> list:
    return ["--config", "xs", "--data", DATA, "--out", out, "--set", 'data.sources=["coco128"]',
            "--set", "model.input_hw=[128,96]", "--batch-size", "4", "--epochs", "2",
            "--workers", "0", "--set", "train.log_every_steps=1", "--set",
            "train.warmup_epochs=0", "--set", "train.jit_compile=false"]


def _interrupt_case(command: str, tmp_path: Path):
    """(argv, ready(stderr), what stderr says after the signal) for ``command``."""
    if command == "evopose-infer":
        return ([sample("demo.mp4"), "--model", "evopose2d-s-160_int8", "--detector", "none",
                 "--output", tmp_path / "out"],
                demo_mid_run,
                "interrupted by SIGINT after")
    if command == "evopose-export":  # between the ONNX file and the TFLite one
        return (["--size", "XS", "--input-size", "128x96", "--formats", "onnx,tflite-fp32",
                 "--n-parity", "2", "--out", tmp_path / "out"],
                lambda err: "evopose-export: INFO: onnx" in err, "interrupted by SIGINT")
    if command == "evopose-train":  # the step in hand ends with a checkpoint
        return (_train_args(tmp_path / "run"), lambda err: re.search(r"step \d+/", err),
                "stopped by a signal at step")
    config = tmp_path / "search.json"
    config.write_text(json.dumps(tiny_config(generations=1)))
    return (["run", "--config", config, tmp_path / "search", "--executor", "sequential"],
            lambda err: "training" in err and "children" in err,
            "continue with 'evopose-search resume")


@needs_data
@pytest.mark.parametrize("command", COMMANDS)
def test_sigint_to_a_running_command_exits_130(command, tmp_path):
    args, ready, said = _interrupt_case(command, tmp_path)
    code, err, _ = _interrupt(_argv(command, *args), ready)
    assert code == 130, err[-2000:]
    assert said in err, err[-2000:]
    assert "Traceback" not in err
    if command == "evopose-train":  # and running it again resumes from that checkpoint
        state = json.loads((tmp_path / "run" / "state.json").read_text())
        assert 1 <= state["step"] and not state["finished"]


@needs_data
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_trainers_process_group_stops_it_with_a_checkpoint(sig, tmp_path):
    """``kill -- -PGID`` or a terminal's Ctrl-C reach the data workers too: training still
    stops after the step in hand with a checkpoint, exits 130 and leaves no worker behind
    (a process pool used to hang for ever here)."""
    args = _train_args(tmp_path / "run")
    args[args.index("--workers") + 1] = "1"  # one data worker process
    code, err, pid = _interrupt(_argv("evopose-train", *args), lambda e: re.search(r"step \d+/", e),
                                sig=sig, group=True)
    assert code == 130, err[-2000:]
    assert "stopped by a signal at step" in err and "Traceback" not in err, err[-2000:]
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert 1 <= state["step"] and not state["finished"]
    # multiprocessing's resource tracker ends a moment after the trainer (its pipe closes):
    # wait for that state; the bound only ends a wait for processes that never go (zombies
    # do not count)
    deadline = time.monotonic() + 120
    while True:
        ps = subprocess.run(["ps", "-s", str(pid), "-o", "stat=,pid=,args="],
                            capture_output=True, text=True).stdout.splitlines()
        left = [line for line in ps if not line.lstrip().startswith("Z")]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"processes left in the trainer's session: {left}"


def test_sigterm_and_an_interrupt_python_could_not_raise_also_exit_130(capsys):
    """SIGTERM is an interrupt too; a KeyboardInterrupt lost in a finaliser or gc callback
    (TensorFlow's, when Ctrl-C lands there) still ends the command with 130, silently."""
    from evopose_sdk.cli_shell import run_main

    class LosesTheInterrupt:
        def __del__(self):
            raise KeyboardInterrupt("SIGINT")

    def swallowed(argv):
        LosesTheInterrupt()
        return 0

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert run_main("evopose-test", lambda argv: signal.raise_signal(signal.SIGTERM)) == 130
    assert "evopose-test: WARNING: interrupted by SIGTERM" in capsys.readouterr().err
    assert run_main("evopose-test", swallowed) == 130
    err = capsys.readouterr().err
    assert "interrupted by SIGINT" in err and "Traceback" not in err and "ignored" not in err
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


# --------------------------------------------------------------------- one tree, one place


def _package_modules() -> list[str]:
    names = []
    for package in ("evopose_sdk", "evopose_sdk.training", "evopose_sdk.training.search",
                    "evopose_sdk.export"):
        pkg = importlib.import_module(package)
        names += [package] + [m.name for m in pkgutil.iter_modules(pkg.__path__, f"{package}.")]
    return sorted(set(names))


def test_every_error_class_is_an_evopose_error():
    errors = {}
    for name in _package_modules():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # an optional dependency (ray, ...) not installed
            if exc.name and exc.name.startswith("evopose_sdk"):
                raise
            continue
        errors.update({f"{name}.{v.__name__}": v for v in vars(module).values()
                       if isinstance(v, type) and issubclass(v, BaseException)
                       and v.__module__ == name})
    names = {key.rsplit(".", 1)[1] for key in errors}
    assert {"CardError", "ConfigError", "DataError", "GenotypeError", "CheckpointError",
            "TorchPickleError", "SearchConfigError", "SearchStateError", "SearchInterrupted",
            "ExportError", "RunInterrupted"} <= names, sorted(names)
    assert [k for k, v in errors.items() if not issubclass(v, EvoPoseError)] == []
    # bases callers catch are kept
    assert issubclass(errors["evopose_sdk.card.CardError"], ValueError)
    search_errors = [v for k, v in errors.items() if k.endswith(("SearchStateError",
                                                                 "SearchInterrupted"))]
    assert all(issubclass(v, RuntimeError) for v in search_errors)


def test_tensorflow_environment_defaults_are_set_in_one_place():
    """Only ``evopose_sdk/_env.py`` sets them, so import order cannot decide their values."""
    variables = ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    setter = re.compile(r'environ(\.setdefault\(\s*|\[\s*)"({})"'.format("|".join(variables)))
    found = [f"{path.relative_to(REPO)}: {m.group(2)}"
             for folder in ("evopose_sdk", "training", "export")
             for path in sorted((REPO / folder).rglob("*.py"))
             for m in setter.finditer(path.read_text(encoding="utf-8"))]
    assert found == [], found
    from evopose_sdk._env import ENV_DEFAULTS

    assert set(ENV_DEFAULTS) == set(variables)
