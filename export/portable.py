"""ONNX graph rewrites that let every common runtime load an exported file.

tf2onnx writes Keras' ``Conv2DTranspose(padding="same", strides=2)`` as a ``ConvTranspose``
with asymmetric ``pads`` (``[0, 0, 1, 1]``: nothing before, one row/column after). ONNX
Runtime and OpenVINO run it; OpenCV's DNN module (``cv2.dnn``, the usual way C++ and
Raspberry Pi apps run an ONNX file) refuses it ("Unsupported asymmetric padding in
deconvolution layer"). :func:`symmetric_conv_transpose` gives each such node the smaller of
its two pads on both sides and crops the surplus with a ``Slice``: the same arithmetic, so
the outputs are unchanged (bit for bit in ONNX Runtime on the shipped models).

Needs only the ``onnx`` package (no TensorFlow), so shipped files can be rewritten as they are.
"""

from __future__ import annotations

import logging

import numpy as np

from evopose_sdk.export.errors import ExportError

log = logging.getLogger(__name__)

#: What the card's ``recipe.export.conv_transpose`` says of a file written through this module.
CARD_NOTE = ("symmetric pads (asymmetric ones rewritten as symmetric pads + Slice by "
             "evopose_sdk.export.portable): loads in ONNX Runtime, OpenCV DNN and OpenVINO")

#: ``Slice`` end meaning "to the end of the axis".
_TO_END = np.iinfo(np.int64).max


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def asymmetric_conv_transposes(model) -> list[str]:
    """Names of the ``ConvTranspose`` nodes of ``model`` (an ``onnx.ModelProto``) whose begin
    and end pads differ."""
    out = []
    for node in model.graph.node:
        if node.op_type != "ConvTranspose":
            continue
        pads = list(_attrs(node).get("pads", []))
        half = len(pads) // 2
        if pads[:half] != pads[half:]:
            out.append(node.name)
    return out


def symmetric_conv_transpose(model) -> list[str]:
    """Rewrite, in place, each ``ConvTranspose`` with asymmetric ``pads`` into one with
    symmetric pads (the smaller pad of each axis, both sides) followed by a ``Slice`` that
    drops the rows/columns the larger pad used to remove.

    ``output_padding`` (added at the end) is kept; the slice counts it in. A node with
    ``auto_pad`` other than ``NOTSET`` or an ``output_shape`` attribute is refused.

    Returns:
        The names of the rewritten nodes (empty when there were none).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    taken = {n.name for n in graph.node} | {v for n in graph.node for v in n.output} \
        | {i.name for i in graph.initializer}
    nodes = list(graph.node)
    rewritten: list[str] = []
    del graph.node[:]
    for original in nodes:
        graph.node.append(original)
        node = graph.node[-1]  # append copies: edit the graph's own node
        if node.op_type != "ConvTranspose":
            continue
        attrs = _attrs(node)
        pads = [int(p) for p in attrs.get("pads", [])]
        half = len(pads) // 2
        begin, end = pads[:half], pads[half:]
        if begin == end:
            continue
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if (auto_pad not in (b"NOTSET", "NOTSET")) or "output_shape" in attrs:
            raise ExportError(f"ConvTranspose {node.name}: asymmetric pads together with "
                              "auto_pad/output_shape are not rewritten")
        keep = [min(b, e) for b, e in zip(begin, end, strict=True)]
        axes = [i for i in range(half) if begin[i] != end[i]]
        starts = [begin[i] - keep[i] for i in axes]
        ends = [-(end[i] - keep[i]) if end[i] > keep[i] else _TO_END for i in axes]
        for a in node.attribute:
            if a.name == "pads":
                del a.ints[:]
                a.ints.extend(keep + keep)
        base = node.name or node.output[0]
        names = [f"{base}/symmetric_pads_{s}" for s in ("full", "starts", "ends", "axes", "slice")]
        if any(n in taken for n in names):
            raise ExportError(f"ConvTranspose {node.name}: names for the rewrite are taken")
        full, out = names[0], node.output[0]
        node.output[0] = full
        for name, values in zip(names[1:4], (starts, ends, [2 + i for i in axes]), strict=True):
            graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
        graph.node.append(helper.make_node("Slice", [full, *names[1:4]], [out], name=names[4]))
        taken.update(names)
        rewritten.append(node.name)
    if rewritten:
        log.info("ConvTranspose with asymmetric pads made symmetric + Slice: %s",
                 ", ".join(rewritten))
    return rewritten
