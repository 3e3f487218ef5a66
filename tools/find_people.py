"""Find the unlabelled people of training sources (detector + teacher) and write them as
teacher-only sources (training/extra_people.py).

    python tools/find_people.py --data ../shared/data --teacher-dir runs/teacher \\
        --teacher /tmp/peers/models/movenet_thunder.tflite --out runs/extra_people \\
        [--sources lsp,lspet,parse]

The teacher gate comes from the teacher pass's keypoints of the labelled people
(``runs/teacher/<source>.npz``, tools/teacher_pass.py) scored against their human labels;
the table and the people each source adds go to ``benchmarks/results/extra_people.json``.
Every person found is kept in ``<out>/<source>/found.json``, so a rerun (another gate)
skips the detector pass of the sources done.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.training import extra_people as xp

log = logging.getLogger("find_people")
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "extra_people.json"


def labelled_teacher(data: Path, teacher_dir: Path, sources: list[str]):
    """(teacher keypoints, human labels, areas) of the labelled people of ``sources``."""
    tk, gt, area = [], [], []
    for name in sources:
        z = np.load(teacher_dir / f"{name}.npz")
        anns = {a["id"]: a for a in json.loads(
            (data / name / "annotations.json").read_text(encoding="utf-8"))["annotations"]}
        for ann_id, kp in zip(z["ann_ids"], z["teacher"], strict=True):
            a = anns[int(ann_id)]
            tk.append(kp)
            gt.append(np.asarray(a["keypoints"], np.float64).reshape(17, 3))
            area.append(float(a.get("area") or a["bbox"][2] * a["bbox"][3]))
    return np.stack(tk), np.stack(gt), np.asarray(area)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--teacher-dir", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--sources", default="lsp,lspet,parse")
    ap.add_argument("--min-score", type=float, default=0.5, help="detector score")
    ap.add_argument("--limit", type=int, help="first N images per source (smoke test)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sources = args.sources.split(",")
    missing = [s for s in sources if not (args.teacher_dir / f"{s}.npz").is_file()]
    if not args.teacher.is_file() or missing:
        log.error("need the teacher %s and the teacher pass of %s (tools/teacher_pass.py)",
                  args.teacher, missing)
        return 2
    from evopose_sdk.detectors import make_detector
    from evopose_sdk.training.pseudo_labeller import MoveNetSinglePose

    table = xp.teacher_gate_table(*labelled_teacher(args.data, args.teacher_dir, sources))
    gate = xp.gate_from_table(table)
    log.info("teacher gate %.2f from %s", gate, table)
    detector, teacher = make_detector("default"), MoveNetSinglePose(args.teacher, 2)
    added = {}
    for name in sources:
        found = args.out / name / "found.json"  # every person found (resumable per source)
        if found.is_file() and not args.limit:
            people = json.loads(found.read_text(encoding="utf-8"))
            log.info("%s: found already (%s)", name, found)
        else:
            people = xp.find_unlabelled_people(args.data / name, detector, teacher,
                                               min_score=args.min_score, limit=args.limit)
            found.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(found, json.dumps(people))
        path = xp.write_source(args.out / name, args.data / name, people, gate)
        added[name] = {"found": len(people),
                       "kept": sum(p["teacher_score"] >= gate for p in people),
                       "annotations": str(path)}
        log.info("%s: %d unlabelled people found, %d kept", name, len(people),
                 added[name]["kept"])
    atomic_write_text(args.results, json.dumps(
        {"gate": gate, "gate_table": table, "detector_min_score": args.min_score,
         "sources": added}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
