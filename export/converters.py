"""Keras -> frozen TF graph -> ONNX (tf2onnx) and TFLite (fp32 / fp16 / int8) bytes.

Both converters start from one frozen graph (variables and captured constants folded in)
whose input is named ``image`` and output ``heatmaps``, so every file carries the contract's
tensor names.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from evopose_sdk.export._backend import keras, tf
from evopose_sdk.export.errors import ExportError
from evopose_sdk.export.options import CALIBRATIONS, DEFAULT_OPSET, check_opset
from evopose_sdk.export.portable import symmetric_conv_transpose
from evopose_sdk.training.int8_ranges import mse_range, subsample

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
BATCH_DIM_NAME = "N"
TFLITE_PRECISIONS = ("fp32", "fp16", "int8")


def frozen_graph_def(model: keras.Model, batch: int | None):
    """Frozen GraphDef of ``model`` with input ``image`` (batch, H, W, 3) and output ``heatmaps``.

    Args:
        batch: fixed batch size, or None for a dynamic batch.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    h, w = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2])
    spec = [tf.TensorSpec((batch, h, w, 3), tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=spec)
    def forward(image):
        return model(image, training=False)

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    gd = frozen.graph.as_graph_def()
    out = frozen.outputs[0].name.split(":")[0]
    if any(n.name == OUTPUT_NAME for n in gd.node):
        raise ExportError(f"the graph already has a node named {OUTPUT_NAME!r}")
    for node in gd.node:
        if node.name == out:
            node.name = OUTPUT_NAME
        for i, inp in enumerate(node.input):
            base, _, port = inp.partition(":")
            if base == out:
                node.input[i] = OUTPUT_NAME + (":" + port if port else "")
            elif base == "^" + out:
                node.input[i] = "^" + OUTPUT_NAME
    return gd


def _concrete_from_graph_def(gd):
    def _import():
        tf.compat.v1.import_graph_def(gd, name="")

    wrapped = tf.compat.v1.wrap_function(_import, [])
    g = wrapped.graph
    return wrapped.prune(g.get_tensor_by_name(INPUT_NAME + ":0"),
                         g.get_tensor_by_name(OUTPUT_NAME + ":0"))


def _rename_value(graph, old: str, new: str) -> None:
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new


def to_onnx(model: keras.Model, opset: int = DEFAULT_OPSET):
    """Convert to an ``onnx.ModelProto`` with dynamic batch, input ``image``, output ``heatmaps``.

    Clean-up after tf2onnx: ``:0`` suffixes dropped from the I/O names, the batch dimension
    named ``N``, unused initializers removed, ConvTranspose pads made symmetric
    (:func:`~evopose_sdk.export.portable.symmetric_conv_transpose`, so OpenCV DNN loads the
    file too), the model checked with ``onnx.checker``.
    """
    import onnx
    import tf2onnx

    opset = check_opset(opset)
    gd = frozen_graph_def(model, batch=None)
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)  # tf2onnx calls TF1 freezing APIs that log deprecations
    try:
        proto, _ = tf2onnx.convert.from_graph_def(
            gd, input_names=[INPUT_NAME + ":0"], output_names=[OUTPUT_NAME + ":0"], opset=opset)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many types
        raise ExportError(f"tf2onnx failed at opset {opset}: {type(exc).__name__}: {exc}") from None
    finally:
        tf_log.setLevel(level)
    g = proto.graph
    _rename_value(g, INPUT_NAME + ":0", INPUT_NAME)
    _rename_value(g, OUTPUT_NAME + ":0", OUTPUT_NAME)
    for vi in (g.input[0], g.output[0]):
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = BATCH_DIM_NAME
    used = {name for node in g.node for name in node.input}
    for init in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(init)
    symmetric_conv_transpose(proto)
    g.name = model.name
    proto.producer_name = "evopose-sdk export (tf2onnx)"
    onnx.checker.check_model(proto)
    return proto


def to_tflite(model: keras.Model, precision: str = "fp32",
              representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
              calibration: str = "mse") -> bytes:
    """Convert to TFLite bytes with a fixed batch of 1.

    Args:
        precision: ``"fp32"``; ``"fp16"`` (fp16 weights, fp32 input/output); ``"int8"`` (full
            integer: uint8 input with the converter's scale/zero point, float32 output via a
            final dequantize, int8 weights and activations inside).
        representative: for int8, a generator factory yielding ``[crop (1, H, W, 3) float32]``
            of real person crops.
        calibration: int8 activation ranges: ``"mse"`` (per tensor, the range with the least
            round-trip error over the crops, see :mod:`evopose_sdk.training.int8_ranges`) or
            ``"minmax"`` (the converter's own calibration minimum and maximum).
    """
    if precision not in TFLITE_PRECISIONS:
        raise ExportError(f"TFLite precision must be one of {TFLITE_PRECISIONS}; "
                          f"received {precision!r}")
    if calibration not in CALIBRATIONS:
        raise ExportError(f"calibration must be one of {CALIBRATIONS}; received {calibration!r}")
    concrete = _concrete_from_graph_def(frozen_graph_def(model, batch=1))
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing trackable_obj": moot for a frozen graph
    try:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        if precision == "fp16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            if representative is None:
                raise ExportError(
                    "int8 TFLite needs a representative dataset of real person crops")
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.float32
            if calibration == "mse":
                conv._experimental_calibrate_only = True  # noqa: SLF001 - ranges edited below
        with warnings.catch_warnings():
            # uint8 input: the range comes from calibration, not from user statistics
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            out = bytes(conv.convert())
        if precision == "int8" and calibration == "mse":
            from tensorflow.lite.python import convert as tfl_convert

            out = bytes(tfl_convert.mlir_quantize(_mse_calibrated(out, representative),
                                                  input_data_type=tf.uint8,
                                                  output_data_type=tf.float32))
        return out
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(
            f"TFLite {precision} conversion failed: {type(exc).__name__}: {exc}") from None
    finally:
        absl.setLevel(level)


def _mse_calibrated(calibrated: bytes,
                    representative: Callable[[], Iterator[list[np.ndarray]]],
                    sample: int = 200_000) -> bytes:
    """A calibrated float TFLite model with each activation's min/max replaced by its MSE range.

    The float model is run over the representative crops with every intermediate tensor
    kept; each tensor that carries calibration statistics gets
    :func:`~evopose_sdk.training.int8_ranges.mse_range` of a sample of its values (measured
    after the swish when its only consumers are a LOGISTIC and the MUL of a swish). The model
    input and fixed-range outputs (LOGISTIC, SOFTMAX, TANH) keep their ranges.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    fb = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = fb.subgraphs[0]
    ops_ = schema.BuiltinOperator

    def code(op) -> int:
        oc = fb.operatorCodes[op.opcodeIndex]
        return max(oc.builtinCode, oc.deprecatedBuiltinCode)

    consumers: dict[int, set[int]] = {}
    fixed = set(graph.inputs)
    for op in graph.operators:
        for i in op.inputs:
            if i >= 0:
                consumers.setdefault(i, set()).add(code(op))
        if code(op) in (ops_.LOGISTIC, ops_.SOFTMAX, ops_.TANH):
            fixed.update(op.outputs)
    tensors = [i for i, t in enumerate(graph.tensors)
               if i not in fixed and t.quantization is not None
               and t.quantization.min is not None and len(t.quantization.min) == 1]
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(  # no XNNPACK: every intermediate tensor must be kept
        model_content=calibrated, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    crops = [x[0] for x in representative()]
    per = max(sample // max(len(crops), 1), 1000)
    rng = np.random.default_rng(0)
    values: dict[int, list[np.ndarray]] = {i: [] for i in tensors}
    for x in crops:
        interp.set_tensor(inp, np.asarray(x, np.float32))
        interp.invoke()
        for i in tensors:
            values[i].append(subsample(interp.get_tensor(i), per, rng))
    swish = {ops_.LOGISTIC, ops_.MUL}
    for i in tensors:
        lo, hi = mse_range(np.concatenate(values[i]), consumers.get(i) == swish)
        graph.tensors[i].quantization.min = [float(lo)]
        graph.tensors[i].quantization.max = [float(hi)]
    log.info("int8 ranges: least-error ranges for %d activation tensors over %d crops",
             len(tensors), len(crops))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(fb))
