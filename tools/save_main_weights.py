"""Keep the main training run's latest weights in the tree, so training continues anywhere.

    python tools/save_main_weights.py runs/main              # -> weights/evopose2d-s_main.weights.npz

Takes the run's newest checkpoint (``state.json``), writes its weights as one fp16
``.weights.npz`` (about 5 MB; :func:`evopose_sdk.training.transfer.save_weights_npz`) with the
run's step, training seconds, CPU seconds and recipe in its metadata, replacing the previous
file (only the latest is kept). ``recipes/evopose2d_s256_main.json`` starts the next stage from
it (``init.from``) on a machine where the run folder is gone; where it survives, plain
``evopose-train --config ...`` resumes the run itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "weights" / "evopose2d-s_main.weights.npz"
log = logging.getLogger("save_main_weights")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("run", type=Path, help="training run folder (with state.json)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--note", default="", help="free text kept in the metadata")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state_path = args.run / "state.json"
    if not state_path.is_file():
        log.error("%s holds no training run (no state.json)", args.run)
        return 2
    state = json.loads(state_path.read_text(encoding="utf-8"))
    from evopose_sdk.training import transfer
    from evopose_sdk.training.rundir import load_checkpoint

    model = load_checkpoint(args.run / state["checkpoint"], compile=False)
    cfg = json.loads((args.run / "config.json").read_text(encoding="utf-8"))
    previous = transfer.weights_npz_meta(args.out) if args.out.is_file() else {}
    history = list(previous.get("history", []))
    if previous and previous.get("run") != str(args.run):  # an earlier stage: keep its record
        history.append({k: previous.get(k) for k in ("run", "step", "elapsed_s", "cpu_s",
                                                      "note")})
    meta = {"run": str(args.run), "step": state["step"], "elapsed_s": state.get("elapsed_s"),
            "cpu_s": state.get("cpu_s"), "init": cfg.get("init", {}).get("from"),
            "config": cfg, "note": args.note, "history": history}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    transfer.save_weights_npz(model, args.out, meta=meta)
    log.info("wrote %s (%.1f MB) from %s step %d", args.out, args.out.stat().st_size / 1e6,
             args.run, state["step"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
