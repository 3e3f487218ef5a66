"""The fast mode's speed-accuracy front: pose-network cost and dev_val AP of fast candidates.

    python benchmarks/fast_front.py --cpu-s 1200 \\
        --candidate S-160x128=runs/ablations/fast-s160x128 \\
        --candidate XS-256x192=runs/ablations/fast-xs256x192

For each candidate ``NAME=RUN`` (``NAME`` = size and input, ``S-160x128``; the run folder of
its fine-tuning from the default's weights, ``recipes/ablations/fast_*.json``) and the shipped
references (``evopose2d-s`` at 256x192 and ``evopose2d-s-160`` at 160x128, AP from their cards):

* MMAC per crop (:func:`evopose_sdk.training.network.count_macs` of the built graph);
* ms per person of the network alone, int8 TFLite (what the fast mode runs) and fp32 ONNX,
  batch 8, 2 threads, no flip, on random-weight exports made by ``evopose_sdk.export`` into
  ``--cache`` (speed does not depend on the weights; crops are random);
* dev_val AP (GT boxes, flip, fp32; training's own evaluation in the run's ``eval_log.csv``)
  at the candidate's latest evaluation within ``--cpu-s`` training CPU seconds (data workers
  included), so candidates are compared at equal training CPU.

Rows of one run compare; the machine is shared and noisy. Frames/s end to end (detector,
tracking, video decoding) for a shipped model come from ``bench_runtime.py``; this table is the
network's share, which is what separates the candidates. Writes
``benchmarks/results/fast_front.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from ablation_table import logged_eval, speed, steps_within_cpu  # noqa: E402  (sibling script)
from bench_runtime import timeit  # noqa: E402  (sibling script)
from runtime_report import table  # noqa: E402  (sibling script)

from evopose_sdk.atomic import atomic_write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "fast_front.json"
log = logging.getLogger("fast_front")
#: shipped references: name -> (size, input_hw)
SHIPPED = {"evopose2d-s": ("S", (256, 192)), "evopose2d-s-160": ("S", (160, 128))}


def parse_name(name: str) -> tuple[str, tuple[int, int]]:
    """``"S-160x128"`` -> ("S", (160, 128))."""
    size, _, hw = name.partition("-")
    h, _, w = hw.lower().partition("x")
    return size.upper(), (int(h), int(w))


def network_cost(size: str, input_hw: tuple[int, int], cache: Path,
                 quick: bool) -> dict[str, float]:
    """MMAC per crop and ms per person (int8 TFLite, fp32 ONNX; batch 8, 2 threads, no flip)
    of a random-weight export of ``size`` at ``input_hw``."""
    import keras

    from evopose_sdk.backends import make_backend
    from evopose_sdk.export import export_model
    from evopose_sdk.training.network import build_evopose, count_macs, get_spec

    spec = get_spec(size)
    stem = f"evopose2d_{size.lower()}_{input_hw[0]}x{input_hw[1]}"
    # the genotype as trained at this input: no compound scaling (the recipes'
    # model.compound_scaling = false), so every weight of the default transfers
    keras.utils.set_random_seed(0)
    model = build_evopose(spec.genotype, input_hw, 17, compound_scaling=False, name=stem)
    macs = count_macs(model)
    out = cache / stem
    files = {"tflite-int8": out / f"{stem}_int8.tflite", "onnx": out / f"{stem}.onnx"}
    missing = [f for f, p in files.items() if not p.is_file()]
    if missing:
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / f"{stem}.keras")
        log.info("exporting random-weight %s at %s (%s) to %s", size, input_hw,
                 ",".join(missing), out)
        export_model(out / f"{stem}.keras", out, formats=",".join(missing), stem=stem,
                     name=f"{stem}-random", trained=False,
                     calib_images=HERE.parent / ".samples", n_parity=4, n_calib=16)
    row = {"mmac": round(macs / 1e6, 1)}
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 255, (8, *input_hw, 3)).astype(np.float32)
    for fmt, path in files.items():
        be = make_backend(path, "onnxruntime" if fmt == "onnx" else "tflite", 2)
        t = timeit(lambda b=be: b.run(crops), min_reps=2 if quick else 5,
                   min_time=0.5 if quick else 2.0)
        row[f"ms_per_person_{fmt}"] = round(t * 1e3 / len(crops), 2)
        be.close()
    return row


def shipped_ap(name: str) -> float | None:
    """dev_val AP (GT boxes, flip) of the shipped fp32 ONNX file's card."""
    from evopose_sdk.registry import available_models

    for m in available_models():
        if m.card.name == name and m.card.file_format == "onnx":
            rows = (m.card.metrics or {}).get("dev_val", {}).get("rows", [])
            for r in rows:
                if r.get("boxes") == "gt" and r.get("flip"):
                    return round(float(r["AP"]), 4)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=RUN_DIR",
                    help="e.g. S-160x128=runs/ablations/fast-s160x128")
    ap.add_argument("--cpu-s", type=float, required=True,
                    help="compare candidates at their latest evaluation within this many "
                         "training CPU seconds")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/evopose_fast_front"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quick", action="store_true", help="fewer timing repetitions")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for name, (size, hw) in SHIPPED.items():
        rows.append({"model": f"{name} (shipped)", "input_hw": list(hw), "AP": shipped_ap(name),
                     "step": None, "cpu_s": None,
                     **network_cost(size, hw, args.cache, args.quick)})
    for spec in args.candidate:
        name, _, run = spec.partition("=")
        run = Path(run)
        size, hw = parse_name(name)
        row = {"model": name, "input_hw": list(hw), "run": str(run), "AP": None, "step": None,
               "cpu_s": None}
        if (run / "eval_log.csv").is_file():
            steps = steps_within_cpu(run, args.cpu_s)
            if steps:
                scores = logged_eval(run, steps[-1]) or {}
                row.update(step=steps[-1], cpu_s=speed(run, steps[-1])["cpu_s"],
                           AP=scores.get("AP"), AP_lt10=scores.get("AP_lt10"),
                           AP_ge10=scores.get("AP_ge10"))
        else:
            log.warning("%s: no eval_log.csv in %s (speed only)", name, run)
        rows.append(row | network_cost(size, hw, args.cache, args.quick))
    result = {"cpu_budget_s": args.cpu_s, "rows": rows,
              "note": "AP: dev_val (300 people), GT boxes, flip, fp32; shipped rows from their "
                      "cards, candidates from their runs' eval_log.csv. ms per person: network "
                      "only, batch 8, 2 threads, no flip, random-weight exports; rows of one run "
                      "compare. Command: python benchmarks/fast_front.py " + " ".join(
                          sys.argv[1:] if argv is None else argv)}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    shown = [r | {k: f"{r[k]:.3f}" for k in ("AP",) if r.get(k) is not None} for r in rows]
    print(table(shown, ["model", "input_hw", "mmac", "ms_per_person_tflite-int8",
                       "ms_per_person_onnx", "AP", "step", "cpu_s"],
                "fast candidates: network cost and dev_val AP (GT boxes, flip)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
