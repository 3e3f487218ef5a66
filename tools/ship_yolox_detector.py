#!/usr/bin/env python3
"""Ship YOLOX-nano (Megvii, Apache-2.0) as a person detector (``detector="yolox"``), with its card.

Source: ``models/yolox_nano.onnx`` of the public repository ``hamacom2004jp/iinfer`` at commit
``c7f9a3c5216c6f8b3e8b35886f863dffa2dc0bf9`` (3,713,911 bytes, sha256 ``d39bee73...``), an
export of Megvii's YOLOX-nano by YOLOX's ``tools/export_onnx.py`` (PyTorch 2.1.1, opset 11):
input ``images`` (1, 3, 416, 416), output ``output`` (1, 3549, 85). It is not byte-identical
to the file of YOLOX's 0.1.1rc0 release, so this script checks what it is before shipping it:

* layout: 85 = 4 box + objectness + 80 COCO classes, 3549 = the grid cells of strides 8/16/32
  at 416; parameters and multiply-adds of its convolutions against YOLOX's published YOLOX-nano
  figures (0.91 M parameters, 1.08 GFLOPs at 416);
* behaviour on the sample photos: the classes of its confident boxes (person = 0 on the
  people, bus = 5 on the bus), boxes through the runtime detector.

The file ships unchanged (byte-identical to the source, sha256 checked).

It writes ``models/detectors/yolox_nano.onnx``, its card ``yolox_nano.onnx.json`` (source,
sha256, licence, input contract, checks, and the dev_val table from a
``benchmarks/detector_sweep.py`` JSON) and ``yolox_nano.LICENSE.txt`` (YOLOX's Apache-2.0
text).

    git clone https://github.com/hamacom2004jp/iinfer /tmp/iinfer
    git -C /tmp/iinfer show c7f9a3c5:models/yolox_nano.onnx > /tmp/yolox_nano.onnx
    git clone https://github.com/Megvii-BaseDetection/YOLOX /tmp/YOLOX
    python tools/ship_yolox_detector.py --source /tmp/yolox_nano.onnx \\
        --licence /tmp/YOLOX/LICENSE --measured benchmarks/results/detector_sweep_issue23.json

Needs ``onnx`` (the ``[export]`` extra).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "models" / "detectors" / "yolox_nano.onnx"
SOURCE = {
    "repository": "hamacom2004jp/iinfer",
    "commit": "c7f9a3c5216c6f8b3e8b35886f863dffa2dc0bf9",
    "path": "models/yolox_nano.onnx",
    "sha256": "d39bee73564e338080378b0ad567fbb40e818b55bbfaf971de82a0267ed16b8a",
    "size_bytes": 3713911,
    "repository_licence": "MIT (the iinfer code); the model is Megvii's YOLOX-nano, Apache-2.0",
}
UPSTREAM = {
    "model": "YOLOX-nano (Ge, Liu, Wang, Li, Sun: YOLOX: Exceeding YOLO Series in 2021, "
             "arXiv:2107.08430), COCO 2017, 80 classes",
    "repository": "Megvii-BaseDetection/YOLOX",
    "published": {"params_M": 0.91, "GFLOPs_416": 1.08, "COCO_val_mAP_416": 25.8},
    "licence": "Apache-2.0, Copyright (c) Megvii Inc. (YOLOX's LICENSE; text in "
               "yolox_nano.LICENSE.txt)",
    "licence_text_from": "Megvii-BaseDetection/YOLOX@6ddff4824372906469a7fae2dc3206c7aa4bbaee "
                         "LICENSE",
}
#: COCO's 80 classes in YOLOX's order (the ones the photo check names)
COCO80 = {0: "person", 5: "bus", 27: "tie", 2: "car", 26: "handbag", 24: "backpack"}


def conv_stats(model: Any, side: int) -> tuple[int, float]:
    """(parameters, GMACs of the Conv nodes at a side x side input) of an ONNX model."""
    import onnx
    from onnx import shape_inference

    m = copy.deepcopy(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = side, side
    for d in m.graph.output[0].type.tensor_type.shape.dim:
        d.ClearField("dim_value")
        d.ClearField("dim_param")
    inferred = shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in inferred.graph.value_info}
    inits = {t.name: t for t in m.graph.initializer}
    macs = 0
    for node in m.graph.node:
        if node.op_type == "Conv":
            w = inits[node.input[1]]
            macs += int(np.prod(w.dims[1:])) * int(np.prod(shapes[node.output[0]][1:]))
    params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
    del onnx
    return params, macs / 1e9


def photo_checks(shipped: Path, photos: list[Path]) -> list[dict]:
    """Per photo: the classes of the boxes scoring >= 0.5 (objectness x best class) of one
    416 view, and the runtime detector's person boxes at its defaults."""
    import onnxruntime as ort

    from evopose_sdk.detectors import YOLOXOnnxDetector, letterbox

    session = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"])
    det = YOLOXOnnxDetector(shipped, threads=1)
    rows = []
    for p in photos:
        image = cv2.imread(str(p))
        padded, _, _ = letterbox(image, (416, 416), centred=False)
        out = session.run(None, {"images": padded.transpose(2, 0, 1)[None].astype(np.float32)})
        a = out[0][0]
        score = a[:, 4] * a[:, 5:].max(axis=1)
        strong = np.unique(a[:, 5:].argmax(axis=1)[score >= 0.5]).tolist()
        boxes, scores = det.detect(image)
        rows.append({"image": p.name,
                     "classes_scoring_0.5": [COCO80.get(c, str(c)) for c in strong],
                     "person_boxes": [[round(float(v)) for v in bx] for bx in boxes],
                     "person_scores": [round(float(s), 3) for s in scores]})
    return rows


def measured_table(sweep: Path) -> dict:
    """The dev_val rows of a detector_sweep JSON: each detector's shipped point, both
    protocols, and the AP rows."""
    d = json.loads(sweep.read_text())
    rows = []
    for r in d["detectors"]:
        for proto, key in (("standard", "shipped"), ("coco128_ignore", "shipped_coco128_ignore")):
            s = r[key]
            rows.append({"detector": r["detector"], "file": r["file"], "protocol": proto,
                         "threshold": s["threshold"], "nms_iou": s["nms_iou"],
                         "recall": round(s["recall"], 4),
                         "fp_per_image": round(s["fp_per_image"], 4),
                         "precision": round(s["precision"], 4),
                         "sweep_ms_per_image": round(r["ms_per_image_median"], 1)})
    ap = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
           if k in ("detector", "point", "protocol", "detector_threshold", "detector_nms", "file",
                    "AP", "AP50", "AP75", "AR")} for row in d.get("ap_rows", [])]
    return {"from": str(sweep.relative_to(REPO)) if sweep.is_relative_to(REPO) else str(sweep),
            "split": "dev_val (110 images, 300 people; the operating point was chosen on it)",
            "rows": rows, "ap_with_detector_boxes": ap,
            "sweep_ms_per_image": "median over the dev_val images in the sweep, one detector "
                                  "after the other on a busy machine: compare with timing",
            "timing": d.get("timing"),
            "video_misses": [{k: v for k, v in r.items() if k != "misses"}
                             for r in d.get("video_misses", [])]}


def main(argv: list[str] | None = None) -> int:
    import onnx

    from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
    from evopose_sdk.card import sha256_file
    from evopose_sdk.detectors import YOLOXOnnxDetector

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, required=True, help="the iinfer yolox_nano.onnx")
    ap.add_argument("--licence", type=Path, required=True, help="YOLOX's LICENSE file")
    ap.add_argument("--measured", type=Path, default=None,
                    help="benchmarks/detector_sweep.py JSON for the card's table")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--photos", type=Path, nargs="*",
                    default=[REPO / ".samples" / "bus.jpg", REPO / ".samples" / "zidane.jpg"])
    args = ap.parse_args(argv)
    if sha256_file(args.source) != SOURCE["sha256"]:
        print(f"error: {args.source} is not the iinfer file (sha256 {sha256_file(args.source)})",
              file=sys.stderr)
        return 2
    licence = args.licence.read_text()
    if "Apache License" not in licence or "Version 2.0" not in licence:
        print(f"error: {args.licence} is not the Apache-2.0 text", file=sys.stderr)
        return 2
    model = onnx.load(str(args.source))
    onnx.checker.check_model(model)
    inp = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    params, gmacs_416 = conv_stats(model, 416)
    atomic_write_bytes(args.out, args.source.read_bytes())
    photos = photo_checks(args.out, [p for p in args.photos if p.is_file()])
    det = YOLOXOnnxDetector(args.out)
    licence_file = args.out.with_name("yolox_nano.LICENSE.txt")
    atomic_write_text(licence_file, licence)
    card = {
        "name": "yolox-nano",
        "kind": "person detector (COCO 80-class detector; the runtime keeps class 0, person)",
        "file": args.out.name,
        "input": {"name": "images", "shape": [1, 3, 416, 416], "dtype": "float32",
                  "format": "NCHW BGR 0-255, no normalisation; the frame resized keeping its "
                            "aspect ratio (cv2 INTER_LINEAR) into the top-left corner of the "
                            "416 x 416 square, the rest filled with 114 (YOLOX's preproc)"},
        "outputs": {"output": "(1, 3549, 85): one row per grid cell of strides 8, 16, 32 "
                              "(52x52, 26x26, 13x13, row-major, finest first): dx, dy, log w, "
                              "log h (centre = (cell + d) x stride, size = exp(log) x stride, "
                              "input pixels), objectness, 80 COCO class probabilities (sigmoids "
                              "in the graph); person = class 0"},
        "runtime": {"class": "evopose_sdk.detectors.YOLOXOnnxDetector",
                    "score": "objectness x P(person)",
                    "flip": "the frame and its mirror image, each view's boxes >= "
                            f"{det.VIEW_FLOOR} merged within the view at IoU {det.VIEW_NMS}, "
                            "paired across views (fuse_views: mean score, score-weighted box)",
                    "flip_default": det.flip,
                    "score_threshold": det.score_threshold, "nms_iou": det.nms_iou},
        "source": SOURCE,
        "upstream": UPSTREAM,
        "checks": {
            "layout": {"input": inp, "output": out, "classes": out[2] - 5,
                       "cells_at_416": out[1]},
            "params": params, "conv_GMACs_416": round(gmacs_416, 4),
            "conv_GFLOPs_416": round(2 * gmacs_416, 3),
            "versus_published": "0.904 M parameters vs 0.91 M; 1.05 conv GFLOPs at 416 vs "
                                "1.08 GFLOPs published (the published count includes more "
                                "than the convolutions)",
            "producer": f"{model.producer_name} {model.producer_version}, opset "
                        f"{model.opset_import[0].version}",
            "photos": photos,
        },
        "licence": "Apache-2.0 (Megvii's YOLOX); full text in yolox_nano.LICENSE.txt; the "
                   "file is shipped unmodified (sha256 = source.sha256)",
        "date": dt.date.today().isoformat(),
        "sha256": sha256_file(args.out),
        "size_bytes": args.out.stat().st_size,
    }
    if args.measured is not None:
        card["measured"] = measured_table(args.measured)
    atomic_write_text(args.out.with_name(args.out.name + ".json"),
                      json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("file", "sha256", "size_bytes")}))
    print(json.dumps(card["checks"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
