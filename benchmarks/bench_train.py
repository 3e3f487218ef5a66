"""Training throughput on CPU (XS and S) and the input pipeline's own throughput.

    python benchmarks/bench_train.py [--batch 8] [--steps 5] [--json bench_train.json]

Training: ``train_on_batch`` on one fixed real batch (so no data loading is timed), after
warm-up steps (graph build/compile). Pipeline: ``KeypointBatches.batch`` with the full
augmentation, one process, real images from ``--data`` (synthetic if absent). Whichever is
lower limits training; the pipeline scales with ``data.workers``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="XS,S")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--json", default="bench_train.json")
    args = p.parse_args(argv)

    import keras
    import numpy as np
    from gpu_train_check import synthetic_source  # the script beside this one

    from evopose_sdk.codec import HeatmapCodec
    from evopose_sdk.training.batches import KeypointBatches
    from evopose_sdk.training.model import compile_model
    from evopose_sdk.training.network import build_named, get_spec
    from evopose_sdk.training.schedules import WarmupCosineDecay
    from evopose_sdk.training.sources import load_sources, sources_in_root

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data)
        if (data / "litehrnet" / "annotations.json").is_file():
            rec = load_sources(sources_in_root(data, "train", ["litehrnet", "lspet"]))
            data_label = "real (litehrnet + lspet)"
        else:
            rec = load_sources([str(synthetic_source(Path(tmp) / "syn"))])
            data_label = "synthetic"
        rows = []
        for size in args.sizes.split(","):
            spec = get_spec(size)
            stride = spec.heatmap_stride
            batches = KeypointBatches(rec, spec.input_hw, stride, args.batch, seed=0)
            # input pipeline alone
            batches.batch(0)
            t0 = time.perf_counter()
            n = 0
            for i in range(1, 1 + max(args.steps, 3)):
                n += len(batches.batch(i)[0])
            pipe_ips = n / (time.perf_counter() - t0)
            # training step alone on one fixed batch
            images, hms, w = batches.batch(0)
            x, y = images.astype(np.float32), HeatmapCodec.pack(hms, w)
            keras.utils.set_random_seed(0)
            model = build_named(size, weight_decay=1e-5)
            compile_model(model, WarmupCosineDecay(1e-3, 1000, 10))
            for _ in range(args.warmup):
                model.train_on_batch(x, y)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            dt = time.perf_counter() - t0
            train_ips = args.batch * args.steps / dt
            rows.append({"model": size, "input_hw": list(spec.input_hw), "batch": args.batch,
                         "train_images_per_s": round(train_ips, 2),
                         "step_s": round(dt / args.steps, 3),
                         "pipeline_images_per_s_1proc": round(pipe_ips, 1),
                         "limit": "model" if train_ips < pipe_ips else "input pipeline"})
            keras.backend.clear_session()
    result = {"backend": keras.backend.backend(), "cpu_count": os.cpu_count(),
              "data": data_label, "rows": rows}
    print(f"backend {result['backend']}, {result['cpu_count']} CPUs, data {data_label}")
    print(f"{'model':<5} {'input':>8} {'batch':>5} {'train img/s':>12} {'step s':>8} "
          f"{'pipeline img/s (1 proc)':>24} {'limit':>15}")
    for r in rows:
        print(f"{r['model']:<5} {'x'.join(map(str, r['input_hw'])):>8} {r['batch']:>5} "
              f"{r['train_images_per_s']:>12.2f} {r['step_s']:>8.3f} "
              f"{r['pipeline_images_per_s_1proc']:>24.1f} {r['limit']:>15}")
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
