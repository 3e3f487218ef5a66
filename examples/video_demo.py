"""Pose on a video file: annotated video + JSON lines, with persistent track ids.

    python examples/video_demo.py .samples/demo.mp4 --model evopose2d-s --max-frames 100

The same job from the shell: ``evopose-infer .samples/demo.mp4 --max-frames 100``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from evopose_sdk import PoseEstimator
from evopose_sdk.registry import DEFAULT_MODEL
from evopose_sdk.video import open_source, stream_with_info
from evopose_sdk.writers import AtomicVideoWriter, JsonLinesWriter


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("video", type=Path)
    p.add_argument("--model", default=DEFAULT_MODEL, help="model name or .onnx/.tflite path")
    p.add_argument("--detect-every", type=int, default=1)
    p.add_argument("--max-frames", type=int, default=None)
    args = p.parse_args()

    src = open_source(args.video)  # raises VideoError for a missing/unreadable file
    out_video = args.video.with_name(f"{args.video.stem}_demo.mp4")
    out_json = args.video.with_name(f"{args.video.stem}_demo.jsonl")
    with PoseEstimator(model=args.model) as est, \
            AtomicVideoWriter(out_video, src.fps) as video, JsonLinesWriter(out_json) as lines:
        for info, frame, people in stream_with_info(est, src, detect_every=args.detect_every,
                                                    max_frames=args.max_frames):
            video.write(people.draw(frame, keypoint_threshold=0.3))
            lines.write({"frame": info.index, "time_s": info.time_s, **people.to_dict()})
            if info.index % 25 == 0:
                print(f"frame {info.index}: ids {people.track_ids.tolist()} "
                      f"{json.dumps({k: round(v, 1) for k, v in people.speed_ms.items()})}")
    print(f"wrote {out_video} and {out_json}")


if __name__ == "__main__":
    main()
