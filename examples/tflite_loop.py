"""TFLite (LiteRT) pose loop, as a phone app runs it: fixed batch 1, fp32/fp16/int8 file.

Runs the pose model on the people of one image (or the whole image) ``--repeat`` times and
prints the per-stage milliseconds. The int8 file takes uint8 input, quantised with the file's
own scale/zero point by :class:`evopose_sdk.backends.TFLiteBackend`.

    python examples/tflite_loop.py models/evopose2d-s_int8.tflite .samples/bus.jpg --threads 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import cv2

from evopose_sdk import PoseEstimator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path, help=".tflite file with its card (<file>.json)")
    ap.add_argument("image", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--detector", default="default", help="'default' or 'whole-image'")
    ap.add_argument("--flip", action="store_true", help="flip test")
    args = ap.parse_args(argv)

    image = cv2.imread(str(args.image))
    if image is None:
        ap.error(f"cannot read {args.image}")
    with PoseEstimator(args.model, backend="tflite", threads=args.threads,
                       detector=args.detector, flip_test=args.flip) as est:
        print(f"{est.card.name}: {est.card.precision}, input {est.card.input_size}, "
              f"trained={est.card.trained}")
        timings: dict[str, list[float]] = {}
        people = est(image)  # warm-up
        for _ in range(args.repeat):
            people = est(image)
            for stage, ms in people.speed_ms.items():
                timings.setdefault(stage, []).append(ms)
    print(f"{len(people)} people; median ms per image:")
    for stage, values in timings.items():
        print(f"  {stage:12s} {statistics.median(values):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
