"""The paper's central claim, measured: a mutated child trained from its parent's weights
(weight transfer) vs the same child trained from scratch, same steps, same data order.

Uses the trained ancestor (generation 0) of a search folder as the parent, draws one-gene
mutants with the search's own mutation space, trains each twice with the search's child
recipe (rotation/scale augmentation off) and validates on ground-truth boxes without flip.

    python benchmarks/transfer_vs_scratch.py --search runs/search-cpu --steps 200 \\
        --children 2 --out docs/search/transfer_vs_scratch.json

Prints a table (child, init, steps, validation loss, seconds) and the loss ratio
scratch / transfer per child (> 1: transfer helps); writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--search", required=True, help="search folder with a trained generation 0")
    p.add_argument("--steps", type=int, default=200, help="training steps of each run")
    p.add_argument("--children", type=int, default=2, help="mutants to compare")
    p.add_argument("--seed", type=int, default=123, help="seed of the mutations")
    p.add_argument("--out", default="transfer_vs_scratch.json", help="JSON results")
    p.add_argument("--work", help="folder for the runs (default: a temp folder)")
    p.add_argument("--parent-steps", type=int, default=0,
                   help="first train the ancestor this many more steps (a better-trained "
                        "parent than the search's short generation 0)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import keras
    import numpy as np

    from evopose_sdk.atomic import atomic_write_text
    from evopose_sdk.training import genotype as gt
    from evopose_sdk.training import transfer
    from evopose_sdk.training.model import build_model
    from evopose_sdk.training.search.config import SearchConfig
    from evopose_sdk.training.search.mutation import mutate
    from evopose_sdk.training.search.runner import (
        Search,
        child_train_config,
        train_child,
        validation_arrays,
        validation_loss,
    )

    search = Search.open(args.search)
    anc = search.dir.read_child("g000_c000")
    if anc["status"] != "done":
        print(f"{args.search}: generation 0 is not trained yet", file=sys.stderr)
        return 2
    parent_w = str(search.dir.child_dir("g000_c000") / anc["weights"])
    cfg = SearchConfig.from_any(search.config.to_dict())
    cfg.child_epochs = 1
    cfg.train_overrides = [o for o in cfg.train_overrides
                           if not o.startswith("train.steps_per_epoch=")]
    cfg.train_overrides.append(f"train.steps_per_epoch={args.steps}")
    cfg.keep_checkpoints = False
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="evopose-tvs-"))
    if args.parent_steps > 0:
        pcfg = SearchConfig.from_any(cfg.to_dict())
        pcfg.train_overrides = [o for o in pcfg.train_overrides
                                if not o.startswith("train.steps_per_epoch=")]
        pcfg.train_overrides.append(f"train.steps_per_epoch={args.parent_steps}")
        prec = {"id": "parent_plus", "generation": 1, "index": 999,
                "genotype": anc["genotype"], "genotype_str": anc["genotype_str"],
                "parent": "g000_c000", "mutation": None}
        (work / "parent_plus").mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        res = train_child({"record": prec, "config": pcfg.to_dict(),
                           "child_dir": str(work / "parent_plus"), "parent_weights": parent_w})
        parent_w = str(work / "parent_plus" / res["weights"])
        anc = dict(anc, val_loss=res["val_loss"])
        print(f"parent trained {args.parent_steps} more steps: val loss {res['val_loss']:.6f} "
              f"({time.time() - t0:.0f} s)", flush=True)
        keras.backend.clear_session()
    space = cfg.mutation_space()
    rng = np.random.default_rng(args.seed)
    seen = {space.signature(anc["genotype"])}
    rows = []
    at_step0 = {}
    baseline = None
    for j in range(args.children):
        geno, mut = mutate(anc["genotype"], space, rng, seen)
        seen.add(space.signature(geno))
        rec = {"id": f"bench_c{j:02d}", "generation": 1, "index": j, "genotype": geno,
               "genotype_str": gt.encode(geno), "parent": "g000_c000", "mutation": mut}
        # the child right after weight transfer, before any training step
        tc = child_train_config(cfg, rec, work / "unused", parent_w)
        keras.backend.clear_session()
        model = build_model(tc, 17)
        transfer.initialize(model, parent_w)
        images, hms, wts = validation_arrays(tc, cfg.input_hw, gt.heatmap_stride(geno),
                                             cfg.val_max_people)
        at_step0[rec["id"]] = validation_loss(model, images, hms, wts, cfg.val_batch_size)
        if baseline is None:  # predicting all-zero heatmaps
            baseline = float((wts[:, None, None, :] * np.square(hms)).mean(axis=(1, 2, 3))
                             .mean())
        print(f"{rec['id']} {rec['genotype_str']}: val loss after transfer, before training "
              f"{at_step0[rec['id']]:.6f}", flush=True)
        for init, pw in (("transfer", parent_w), ("scratch", None)):
            d = work / f"{rec['id']}_{init}"
            d.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            res = train_child({"record": rec, "config": cfg.to_dict(), "child_dir": str(d),
                               "parent_weights": pw})
            rows.append({"child": rec["id"], "genotype": rec["genotype_str"],
                         "mutation": mut, "init": init, "steps": res["steps"],
                         "val_loss": res["val_loss"], "params": res["params"],
                         "seconds": round(time.time() - t0, 1), "transfer": res["transfer"]})
            print(f"{rec['id']} {init:8s} steps {res['steps']} val_loss {res['val_loss']:.6f} "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
            keras.backend.clear_session()
    ratios = {}
    for j in range(args.children):
        cid = f"bench_c{j:02d}"
        t = next(r for r in rows if r["child"] == cid and r["init"] == "transfer")
        s = next(r for r in rows if r["child"] == cid and r["init"] == "scratch")
        ratios[cid] = s["val_loss"] / t["val_loss"]
    print()
    print("| child | mutation | steps | val loss (transfer) | val loss (scratch) | "
          "scratch / transfer |")
    print("|---|---|---:|---:|---:|---:|")
    for cid, ratio in ratios.items():
        t = next(r for r in rows if r["child"] == cid and r["init"] == "transfer")
        s = next(r for r in rows if r["child"] == cid and r["init"] == "scratch")
        m = t["mutation"]
        print(f"| {cid} | b{m['block']} {m['gene']} {m['from']}->{m['to']} | {t['steps']} | "
              f"{t['val_loss']:.6f} | {s['val_loss']:.6f} | {ratio:.3f} |")
    gm = float(np.exp(np.mean(np.log(list(ratios.values())))))
    print(f"geometric mean ratio scratch/transfer: {gm:.3f}")
    print(f"parent (generation 0) val loss {anc['val_loss']:.6f}; all-zero heatmaps "
          f"{baseline:.6f}; after transfer, before training: "
          + ", ".join(f"{k} {v:.6f}" for k, v in at_step0.items()))
    out = {"search": str(search.dir.root), "parent": "g000_c000",
           "parent_extra_steps": args.parent_steps,
           "parent_genotype": anc["genotype_str"], "parent_val_loss": anc["val_loss"],
           "input_hw": cfg.input_hw, "steps": args.steps, "rows": rows,
           "val_loss_after_transfer_before_training": at_step0,
           "val_loss_all_zero_heatmaps": baseline,
           "ratio_scratch_over_transfer": ratios, "geometric_mean_ratio": gm,
           "keras_backend": keras.backend.backend(), "cpu_count": os.cpu_count()}
    atomic_write_text(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
