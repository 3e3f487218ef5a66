"""Live pose from a webcam in a window (needs a GUI build of OpenCV: opencv-python, not
-headless). Press q to quit.

    python examples/webcam_demo.py --camera 0 --detect-every 3
"""

from __future__ import annotations

import argparse

import cv2

from evopose_sdk import EvoPoseError, PoseEstimator
from evopose_sdk.registry import DEFAULT_MODEL


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--camera", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--detect-every", type=int, default=3,
                   help="detector every k frames, keypoint-following crops in between")
    p.add_argument("--flip", action="store_true", help="flip test: slower, slightly more accurate")
    args = p.parse_args()

    if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):  # OpenCV's own log: errors only
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        run(args)
    except EvoPoseError as exc:  # no camera, unreadable model...: one line, no traceback
        raise SystemExit(f"webcam_demo: {exc}") from None


def run(args: argparse.Namespace) -> None:
    with PoseEstimator(model=args.model, flip_test=args.flip) as est:
        for frame, people in est.stream(args.camera, detect_every=args.detect_every):
            fps = 1000.0 / max(sum(people.speed_ms.values()), 1e-3)
            shown = people.draw(frame)
            cv2.putText(shown, f"{fps:.1f} fps  {len(people)} people", (10, 30),
                        cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 0), 2)
            try:
                cv2.imshow("evopose", shown)
            except cv2.error:
                raise SystemExit("this OpenCV has no GUI (opencv-python-headless): use "
                                 "`evopose-infer 0` to write a video instead") from None
            if cv2.waitKey(1) & 0xFF == ord("q"):
                break
    cv2.destroyAllWindows()


if __name__ == "__main__":
    main()
