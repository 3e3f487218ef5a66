"""Release steps as package functions (evopose_sdk.training.release, .dev_val_report): the
card records of a real tiny training run, the main-weights file, and the dev_val table of a
shipped model file. tools/ship_model.py and tools/save_main_weights.py are thin wrappers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _training_helpers import DATA_ROOT, REPO, require_data

SHIPPED = REPO / "models" / "evopose2d-s.onnx.json"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A real two-step XS run on coco128 (state.json, checkpoint, config, train_log.csv)."""
    require_data("coco128")
    from evopose_sdk.training import config as cfgmod
    from evopose_sdk.training.train import train

    out = tmp_path_factory.mktemp("run")
    train(cfgmod.load_config("xs", [
        f"data.root={DATA_ROOT}", 'data.sources=["coco128"]', "model.input_hw=[128,96]",
        "train.batch_size=4", "train.epochs=1", "train.warmup_epochs=1", "train.lr=1e-3",
        "data.workers=0", "train.progress=false", "train.log_every_steps=1",
        "train.max_steps=2", f"output.dir={out}"]))
    return out


@pytest.mark.slow
def test_stage_record_and_training_time_of_a_run(tiny_run, tmp_path):
    from evopose_sdk.training.release import stage_record, training_time

    t = training_time(tiny_run)
    assert t["steps"] == 2 and t["elapsed_s"] > 0 and np.isfinite(t["final_heatmap_loss"])
    assert training_time(tmp_path / "gone") == {}
    recipe = tmp_path / "recipe.json"
    recipe.write_text((tiny_run / "config.json").read_text())
    stage = stage_record(recipe, tiny_run)
    assert stage["config"] == json.loads(recipe.read_text())
    assert stage["config_file"] == str(recipe) and stage["steps"] == 2


@pytest.mark.slow
def test_save_main_weights_keeps_the_earlier_run_in_history(tiny_run, tmp_path):
    import keras

    from evopose_sdk.training import transfer
    from evopose_sdk.training.release import save_main_weights, stage_record
    from evopose_sdk.training.rundir import load_checkpoint

    out = tmp_path / "w" / "main.weights.npz"
    assert save_main_weights(tiny_run, out, note="first") == out
    meta = transfer.weights_npz_meta(out)
    assert (meta["run"], meta["step"], meta["note"], meta["history"]) == \
        (str(tiny_run), 2, "first", [])
    assert meta["cpu_s"] > 0 and meta["config"]["model"]["input_hw"] == [128, 96]
    stage = stage_record(out, tmp_path / "gone")  # a stage whose run folder is gone
    assert stage["config"] == meta["config"] and stage["steps"] == 2
    assert stage["note"] == "first" and "main.weights.npz" in stage["config_file"]
    later = tmp_path / "later"
    shutil.copytree(tiny_run, later)
    save_main_weights(later, out, note="second")
    meta = transfer.weights_npz_meta(out)
    assert meta["run"] == str(later)
    assert [h["run"] for h in meta["history"]] == [str(tiny_run)]
    state = json.loads((tiny_run / "state.json").read_text())
    model = load_checkpoint(tiny_run / state["checkpoint"], compile=False)
    report = transfer.initialize(keras.models.clone_model(model), out)
    assert report.count("full") == len(transfer.weights_of(model))


def test_save_main_weights_without_a_run_writes_nothing(tmp_path):
    from evopose_sdk.training.release import save_main_weights, save_weights_main

    with pytest.raises(FileNotFoundError, match="no state.json"):
        save_main_weights(tmp_path, tmp_path / "w.weights.npz")
    assert save_weights_main([str(tmp_path), "--out", str(tmp_path / "w.weights.npz")]) == 2
    assert not (tmp_path / "w.weights.npz").exists()


def test_card_records_match_the_shipped_card():
    from evopose_sdk.training.release import earlier_stages, training_data_record

    card = json.loads(SHIPPED.read_text())
    # the shipped default model's training data, rebuilt from the agreement table it used
    record = training_data_record(
        teacher_labels=REPO / "benchmarks" / "results" / "teacher_agreement.json")
    assert record == card["training_data"]
    stages = card["recipe"]["stages"]
    assert earlier_stages(SHIPPED) == stages
    assert earlier_stages(f"{SHIPPED}:2") == stages[:2]


def test_dev_val_report_of_a_shipped_file(tmp_path):
    data = require_data("coco128", "cocomini_train", "tinycoco")
    from evopose_sdk.training.dev_val_report import (
        dev_val_report,
        plan,
        report_path,
        table,
        write_report,
    )

    onnx, int8 = REPO / "models" / "evopose2d-s-160.onnx", Path("x_int8.tflite")
    assert [r[1:] for r in plan([onnx, int8], quick=True, det_thresholds=[0.3])] == [
        ("gt", True, "dark", None), ("gt", True, "quarter", None),
        ("detector", True, "dark", 0.3), ("gt", True, "dark", None)]
    report = dev_val_report([onnx], data, peers=None, quick=True, quiet=True)
    assert report["quick"] and report["images"] == 20 and report["people"] > 0
    assert [(r["boxes"], r["decode"]) for r in report["rows"]] == [("gt", "dark"),
                                                                  ("gt", "quarter")]
    for row in report["rows"]:
        assert 0.02 < row["AP"] <= 1 and row["ms_per_person"] > 0  # a trained model
    assert "| evopose2d-s-160 |" in table(report["rows"])
    path = write_report(report, report_path(tmp_path, "t"))
    assert path.name == "eval_dev_val_t.json" and json.loads(path.read_text()) == report
    with pytest.raises(FileNotFoundError):
        dev_val_report([tmp_path / "none.onnx"], data, peers=None)
