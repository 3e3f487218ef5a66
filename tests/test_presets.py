"""Named presets (``default``, ``fast``, ``accurate``): one object each, and the estimator,
``evopose-infer`` and the benchmark's modes read the same values from it. Real shipped models
and the sample video."""

from __future__ import annotations

import importlib.util
import json

import pytest
from _video_helpers import REPO, sample

from evopose_sdk import PoseEstimator
from evopose_sdk.cli import main
from evopose_sdk.cli_args import build_parser, estimator_options
from evopose_sdk.options import PoseEstimatorOptions
from evopose_sdk.presets import PRESETS

#: What each preset runs, as the README and docs/benchmarks.md quote it.
EXPECTED = {
    "default": dict(file="evopose2d-s_int8.tflite", flip_video=False, flip_photos=True,
                    detect_every_video=3, threads=None),
    "fast": dict(file="evopose2d-s-160_int8.tflite", flip_video=False, flip_photos=False,
                 detect_every_video=5, threads=2),
    "accurate": dict(file="evopose2d-s.onnx", flip_video=True, flip_photos=True,
                     detect_every_video=1, threads=None),
}


def _bench_modes() -> dict[str, dict]:
    """``benchmarks/bench_runtime.py``'s MODES, loaded from the file beside it that holds them
    (``runtime_pipelines.py``, which imports only the package)."""
    spec = importlib.util.spec_from_file_location(
        "runtime_pipelines", REPO / "benchmarks" / "runtime_pipelines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODES


def _cli_kwargs(*flags: str) -> dict:
    return estimator_options(build_parser().parse_args(["x.mp4", *flags]))


def _runs(est: PoseEstimator) -> dict:
    """What an estimator runs: its file, flip test and detector schedule by source, threads."""
    return dict(file=est.model_path.name, flip_video=est.flip_for("video"),
                flip_photos=est.flip_for("images"),
                detect_every_video=est.detect_every_for("video"), threads=est.options.threads)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_estimator_cli_and_benchmark_read_the_same_preset(name):
    assert set(PRESETS) == set(EXPECTED)
    flags = [] if name == "default" else [f"--{name}"]
    mode = _bench_modes()[name]
    assert mode["cli"].split() == flags  # the table's flags column asks for this preset
    with PoseEstimator(preset=name) as est, PoseEstimator(**_cli_kwargs(*flags)) as cli, \
            PoseEstimator(**mode["est"]) as bench:
        assert est.options == cli.options == bench.options == \
            PoseEstimatorOptions.from_preset(name)
        assert _runs(est) == _runs(cli) == _runs(bench) == EXPECTED[name]
        assert est.detect_every_for("images") == 1  # photos: every image, whatever the preset
        assert est.preset is PRESETS[name] and f"preset={name!r}" in repr(est)


def test_every_benchmark_mode_is_what_its_cli_flags_ask_for():
    for name, mode in _bench_modes().items():
        asked = PoseEstimatorOptions.from_preset(**_cli_kwargs(*mode["cli"].split()))
        assert asked == PoseEstimatorOptions.from_preset(**mode["est"]), name


def test_options_given_win_over_the_preset():
    with PoseEstimator(preset="fast", threads=1, flip_test=True, detect_every=2) as est:
        assert _runs(est) == dict(EXPECTED["fast"], threads=1, flip_video=True,
                                  flip_photos=True, detect_every_video=2)
    assert PoseEstimatorOptions.from_preset(**_cli_kwargs(
        "--fast", "--threads", "1", "--flip", "--detect-every", "2")) == est.options
    # the preset's help line names what it stands for, from the same object
    help_text = build_parser().format_help()
    assert PRESETS["fast"].flags() == ("--model evopose2d-s-160 --precision int8 --no-flip "
                                       "--detect-every 5 --threads 2")
    assert "--accurate" in help_text and "--fast" in help_text


@pytest.mark.parametrize("make, error, match", [
    (lambda: PoseEstimator(preset="fsat"), ValueError, "did you mean 'fast'"),
    (lambda: PoseEstimator(preset="fast", options=PoseEstimatorOptions()), TypeError, "not both"),
    (lambda: PoseEstimatorOptions(detect_every=0), ValueError, "detect_every must be >= 1"),
    (lambda: PoseEstimatorOptions(detect_every=2.5), ValueError, "detect_every must be an integer"),
    (lambda: PoseEstimatorOptions.from_preset("fast", detect_evry=2), TypeError,
     "did you mean 'detect_every'"),
])
def test_bad_presets_and_options_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_fast_preset_on_a_video_through_the_api_and_the_cli(tmp_path):
    """The preset's detector schedule reaches the stream (frames 0, 5, 10, and a frame whose
    previous frame had nobody to follow), and evopose-infer --fast writes the very people
    that PoseEstimator(preset="fast").stream() gives."""
    video = sample("demo.mp4")
    with PoseEstimator(preset="fast") as est:
        results = [r for _, r in est.stream(video, max_frames=11)]
    detected = [r.speed_ms["detect"] > 0 for r in results]
    assert detected == [i % 5 == 0 or len(results[i - 1]) == 0 for i in range(11)]
    assert detected.count(False) >= 4, detected  # the crops followed people

    assert main([str(video), "--fast", "--max-frames", "11", "--no-video", "-q",
                 "-o", str(tmp_path)]) == 0
    records = [json.loads(line) for line in
               (tmp_path / "demo_pose.jsonl").read_text().splitlines()]
    assert [r["speed_ms"]["detect"] > 0 for r in records] == detected
    assert [r["people"] for r in records] == [r.to_dict()["people"] for r in results]
