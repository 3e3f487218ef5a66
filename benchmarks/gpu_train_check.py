"""GPU training check: environment, a short timed training run, images/s.

Meant for a GPU machine with ``KERAS_BACKEND=jax`` (no TensorFlow there); also runs on CPU.

    KERAS_BACKEND=jax python benchmarks/gpu_train_check.py --size S --batch 64 --steps 300
    KERAS_BACKEND=jax python benchmarks/gpu_train_check.py --size XS --batch 4 --steps 6  # CPU

Uses ``--data`` (a folder of <source>/annotations.json + images/) when it exists, else a
synthetic COCO source written to a temp folder, so the script needs nothing but the repo.
Prints the environment, the precision chosen, the step times and the images/s after warm-up,
and writes them as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def synthetic_source(folder: Path, n_images: int = 64) -> Path:
    """A COCO keypoint source of random images with one person box each."""
    import cv2
    import numpy as np

    from evopose_sdk.skeleton import COCO_KEYPOINT_NAMES

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(n_images):
        img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / "images" / f"{i}.jpg"), img)
        x, y = rng.uniform(100, 400), rng.uniform(50, 150)
        kps = np.stack([rng.uniform(x, x + 150, 17), rng.uniform(y, y + 300, 17),
                        np.full(17, 2.0)], axis=1)
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 640, "height": 480,
                       "split": "train"})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "bbox": [x, y, 150.0, 300.0], "area": 150 * 300 * 0.53,
                     "keypoints": kps.reshape(-1).tolist(), "num_keypoints": 17})
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES),
                            "skeleton": []}]}
    (folder / "annotations.json").write_text(json.dumps(coco))
    return folder


def environment() -> dict:
    import keras

    env = {"python": sys.version.split()[0], "platform": platform.platform(),
           "backend": keras.backend.backend(), "keras": keras.__version__,
           "cpu_count": os.cpu_count()}
    if env["backend"] == "jax":
        import jax

        env["jax"] = jax.__version__
        env["devices"] = [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in jax.devices()]
    elif env["backend"] == "tensorflow":
        import tensorflow as tf

        env["tensorflow"] = tf.__version__
        env["devices"] = [d.name for d in tf.config.list_physical_devices()]
    return env


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="S", help="XS|S|M|L")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the timing")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--precision", default="auto")
    p.add_argument("--devices", default="1")
    p.add_argument("--json", default="gpu_train_check.json")
    args = p.parse_args(argv)

    import numpy as np

    env = environment()
    print("environment:", json.dumps(env, indent=1))
    if env["backend"] != "jax":
        print("note: KERAS_BACKEND is not jax; the GPU machine runs jax", file=sys.stderr)
    from evopose_sdk.training import config as cfgmod
    from evopose_sdk.training.rundir import read_loss_curve
    from evopose_sdk.training.train import train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data)
        if (data / "lsp" / "annotations.json").is_file():
            sources = f"data.root={data}"
            print(f"data: {data}")
        else:
            synthetic_source(tmp / "synthetic")
            sources = f'data.sources=[{json.dumps(str(tmp / "synthetic"))}]'
            print("data: synthetic (no --data folder found)")
        cfg = cfgmod.load_config(args.size.lower(), [
            sources, f"train.batch_size={args.batch}", f"train.max_steps={args.steps}",
            "train.epochs=1000", f"data.workers={args.workers}", "train.progress=false",
            f"train.precision={args.precision}", f"train.devices={json.dumps(args.devices)}",
            "train.log_every_steps=50", f"output.dir={tmp / 'run'}",
            "train.checkpoint_every_steps=0"])
        t0 = time.time()
        train(cfg)
        wall = time.time() - t0
        steps, ips = read_loss_curve(tmp / "run", "images_per_s")
        _, loss = read_loss_curve(tmp / "run", "loss")
        state = json.loads((tmp / "run" / "state.json").read_text())
    warm = args.warmup if args.warmup is not None else min(20, max(1, len(steps) // 5))
    timed = ips[warm:] if len(ips) > warm else ips
    result = {"env": env, "size": args.size, "batch": args.batch, "steps": int(steps[-1]),
              "precision": state["precision"], "devices": state["devices"],
              "images_per_s_median": float(np.median(timed)),
              "images_per_s_mean": float(np.mean(timed)), "wall_s": wall,
              "loss_first": float(loss[0]), "loss_last": float(loss[-1])}
    print(f"\n{args.size} batch {args.batch} {state['precision']} on {env.get('devices')}: "
          f"{result['images_per_s_median']:.1f} images/s (median over steps {warm + 1}.."
          f"{result['steps']}), loss {loss[0]:.4f} -> {loss[-1]:.4f}, wall {wall:.0f} s")
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
