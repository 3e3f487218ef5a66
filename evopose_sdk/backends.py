"""Inference backends: one small class per runtime, same call.

``backend.run(batch)`` takes (N, H, W, 3) float32 RGB 0-255 crops and returns NHWC float32
heatmaps (N, Hh, Ww, K). Preprocessing (normalisation) is inside the model graph; the int8
TFLite path quantises the input with the file's own parameters, as a phone app would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from evopose_sdk.errors import ModelError

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """Runs a pose model on a batch of crops."""

    input_hw: tuple[int, int]

    def run(self, batch_nhwc: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> (N, Hh, Ww, K) float32 heatmaps."""
        ...

    def close(self) -> None:
        """Release the runtime's resources."""
        ...


def _check_batch(batch: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    b = np.asarray(batch, dtype=np.float32)
    if b.ndim != 4 or b.shape[1:] != (input_hw[0], input_hw[1], 3):
        raise ValueError(f"batch must be (N, {input_hw[0]}, {input_hw[1]}, 3); "
                         f"received {b.shape}")
    return b


def _check_heatmaps(out: np.ndarray, path: Path, n: int) -> np.ndarray:
    if out.ndim != 4 or out.shape[0] != n:
        raise ModelError(f"{path.name} is not a pose heatmap model: its output has shape "
                         f"{out.shape}, expected NHWC heatmaps ({n}, H/s, W/s, K)")
    return out.astype(np.float32, copy=False)


@contextlib.contextmanager
def native_stderr_to_log(what: str, level: int = logging.WARNING) -> Iterator[None]:
    """Route what native code writes to file descriptor 2 during the block into logging.

    LiteRT's C++ prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight
    to fd 2, past Python's logging; here such ``INFO:`` lines become info records (hidden at
    the default WARNING level) and any other line a record at ``level`` (FFmpeg's ``moov atom
    not found`` when a video is opened: debug, as the error raised says it), all prefixed
    with ``what``.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no fd 2 (embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.startswith("INFO:"):
                    logger.info("%s: %s", what, line[5:].strip())
                elif line.strip():
                    logger.log(level, "%s: %s", what, line.strip())


#: ``device=`` names -> the ONNX Runtime execution provider each one asks for.
DEVICE_PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def parse_device(device: str | None) -> tuple[str, int | None]:
    """``"cuda:1"`` -> ``("cuda", 1)``; None -> ``("cpu", None)``.

    Raises:
        ValueError: an unknown device name or a bad index, naming the known ones.
    """
    text = "cpu" if device is None else str(device).strip().lower()
    name, _, index = text.partition(":")
    if name == "gpu":
        name = "cuda"
    if name not in DEVICE_PROVIDERS or (index and not index.isdigit()) or \
            (index and name == "cpu"):
        raise ValueError(f"unknown device {device!r}; use one of "
                         f"{', '.join(DEVICE_PROVIDERS)} (an index as in cuda:1)")
    return name, int(index) if index else None


def onnx_providers(device: str | None, what: str = "the model") -> list:
    """ONNX Runtime ``providers`` for a ``device`` (see :data:`DEVICE_PROVIDERS`), CPU last as
    the fallback. A provider this onnxruntime build lacks (``pip install onnxruntime-gpu``
    for CUDA) gives CPU and a warning that says so.

    Raises:
        ValueError: an unknown device (:func:`parse_device`).
    """
    import onnxruntime as ort

    name, index = parse_device(device)
    if name == "cpu":
        return ["CPUExecutionProvider"]
    provider = DEVICE_PROVIDERS[name]
    available = ort.get_available_providers()
    if provider not in available:
        logger.warning("device %r: this onnxruntime (%s) has no %s (it has %s), so %s runs on "
                       "the CPU; for CUDA install onnxruntime-gpu in place of onnxruntime",
                       device, ort.__version__, provider, ", ".join(available), what)
        return ["CPUExecutionProvider"]
    options = {"device_id": index} if index is not None else {}
    return [(provider, options), "CPUExecutionProvider"]


def session_device(session: object) -> str:
    """The device an onnxruntime session runs on (its first provider) as a ``device=`` name."""
    first = session.get_providers()[0]  # type: ignore[attr-defined]
    return next((k for k, v in DEVICE_PROVIDERS.items() if v == first), first)


def _model_source(model: str | os.PathLike | bytes, suffix: str) -> tuple[Path, bytes | None]:
    """(path used in messages, model bytes or None) of a file path or in-memory model."""
    if isinstance(model, bytes | bytearray):
        return Path(f"<in-memory model>{suffix}"), bytes(model)
    return Path(model), None


class OnnxBackend:
    """ONNX Runtime (CPU by default) with a dynamic or fixed batch dimension.

    Args:
        path: ``.onnx`` file, or the serialised model as bytes (export parity).
        threads: intra-op threads (None = onnxruntime's default, all cores).
        input_name, output_name: tensor names (from the card); the only input/output is used
            when the file has just one.
        providers: onnxruntime execution providers (default CPU; see :func:`onnx_providers`).
    """

    def __init__(self, path: str | os.PathLike | bytes, threads: int | None = None,
                 input_name: str = "image", output_name: str = "heatmaps",
                 providers: list | None = None) -> None:
        import onnxruntime as ort

        self.path, content = _model_source(path, ".onnx")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # The memory pattern is planned and kept per input shape: with a new crop count on
        # most frames of a video, resident memory grew by ~40 MB per new batch size (598 MiB
        # at 20 frames, 1.2 GiB at 150). Without it the arena only grows to the largest batch.
        opts.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(
                content if content is not None else str(self.path), sess_options=opts,
                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(f"cannot load ONNX model {self.path}: {exc}") from None
        wanted = providers[0] if providers else "CPUExecutionProvider"
        wanted = wanted[0] if isinstance(wanted, tuple) else wanted
        if self.session.get_providers()[0] != wanted:  # e.g. CUDA installed, no driver
            logger.warning("%s: %s could not start (see onnxruntime's log with --verbose); "
                           "running on %s", self.path.name, wanted, self.session.get_providers()[0])
        #: the device the session runs on (``"cpu"``, ``"cuda"``, ...)
        self.device = session_device(self.session)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        names_in = [i.name for i in inputs]
        names_out = [o.name for o in outputs]
        inp = next((i for i in inputs if i.name == input_name), inputs[0] if len(inputs) == 1 else None)
        out = next((o for o in outputs if o.name == output_name),
                   outputs[0] if len(outputs) == 1 else None)
        if inp is None or out is None:
            raise ModelError(f"{self.path.name} is not a pose model: expected input "
                             f"{input_name!r} and output {output_name!r}; it has inputs "
                             f"{names_in} and outputs {names_out}")
        if len(inp.shape) != 4 or inp.shape[3] != 3 or not all(isinstance(d, int) for d in inp.shape[1:3]):
            raise ModelError(f"{self.path.name} is not a pose model: input {inp.name!r} has shape "
                             f"{inp.shape}, expected NHWC (N, H, W, 3) with fixed H, W")
        if len(out.shape) != 4:
            raise ModelError(f"{self.path.name} is not a pose model: output {out.name!r} has shape "
                             f"{out.shape}, expected NHWC heatmaps (N, H/s, W/s, K)")
        if "float" not in inp.type:
            raise ModelError(f"{self.path.name}: input {inp.name!r} is {inp.type}, expected float")
        self.input_name = inp.name
        self.output_name = out.name
        self.input_hw = (int(inp.shape[1]), int(inp.shape[2]))
        self.output_shape = tuple(out.shape)
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._float16 = "float16" in inp.type

    def run(self, batch_nhwc: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> (N, Hh, Ww, K) float32."""
        b = _check_batch(batch_nhwc, self.input_hw)
        if self._float16:
            b = b.astype(np.float16)
        if self.fixed_batch is None or self.fixed_batch == b.shape[0]:
            out = self.session.run([self.output_name], {self.input_name: b})[0]
        elif self.fixed_batch == 1:
            out = np.concatenate([self.session.run([self.output_name], {self.input_name: b[i:i + 1]})[0]
                                  for i in range(b.shape[0])], axis=0)
        else:
            raise ModelError(f"{self.path.name} has a fixed batch of {self.fixed_batch}; "
                             "export it with a dynamic batch")
        return _check_heatmaps(out, self.path, b.shape[0])

    def close(self) -> None:
        self.session = None


@dataclass
class _Interpreter:
    """One LiteRT interpreter of a :class:`TFLiteBackend`'s pool and the batch size its input
    is allocated for."""

    interpreter: object
    batch: int


class TFLiteBackend:
    """LiteRT (``ai_edge_litert``) interpreter for fp32, fp16 and int8 files.

    The crops of a call run as one batch (the interpreter's input is resized to it), or one
    after another when the file's graph only takes a batch of 1.
    Integer input (uint8/int8) is quantised with the file's scale and zero point
    (``input_quantization``); integer output is dequantised the same way. ``path`` may also be
    the model as bytes (export parity).

    A LiteRT interpreter is not thread-safe (its tensors are shared state: set_tensor, invoke,
    get_tensor, resizing), so each call takes an interpreter of its own from a small pool: the
    first one is made here, more only while calls from several threads overlap, up to
    ``max_interpreters`` (default: the CPU count over ``threads``, at most 8; on 2 cores with
    one thread each, 2); beyond that, calls wait for a free one. Serial use keeps one.
    """

    def __init__(self, path: str | os.PathLike | bytes, threads: int | None = None,
                 input_name: str = "image", output_name: str = "heatmaps",
                 max_interpreters: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError("the TFLite backend needs ai-edge-litert: pip install "
                             "'evopose-sdk[tflite]'") from None
        self.path, content = _model_source(path, ".tflite")
        self._make = lambda: Interpreter(  # noqa: E731 - one recipe for every pool member
            **({"model_content": content} if content is not None else
               {"model_path": str(self.path)}), num_threads=int(threads) if threads else None)
        self.interpreter = self._new_interpreter()
        ins = self.interpreter.get_input_details()
        outs = self.interpreter.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelError(f"{self.path.name} is not a pose model: expected one input and one "
                             f"output; it has {len(ins)} inputs and {len(outs)} outputs")
        self._in, self._out = ins[0], outs[0]
        shape = tuple(int(v) for v in self._in["shape"])
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"{self.path.name} is not a pose model: input shape {shape}, "
                             "expected (1, H, W, 3)")
        if len(self._out["shape"]) != 4:
            raise ModelError(f"{self.path.name} is not a pose model: output shape "
                             f"{tuple(self._out['shape'])}, expected (1, H/s, W/s, K)")
        self.input_hw = (shape[1], shape[2])
        self.input_dtype = np.dtype(self._in["dtype"])
        self.output_dtype = np.dtype(self._out["dtype"])
        #: (scale, zero point) of the input; (0.0, 0) for float input.
        self.input_quantization: tuple[float, int] = tuple(self._in.get("quantization", (0.0, 0)))
        self._out_q = self._out.get("quantization", (0.0, 0))
        self._batched = True
        self.device = "cpu"
        #: most interpreters the pool makes (each runs one call at a time)
        self.max_interpreters = int(max_interpreters) if max_interpreters else \
            max(1, min(8, (os.cpu_count() or 1) // max(1, int(threads or 1))))
        first = _Interpreter(self.interpreter, int(shape[0]))
        self._idle: list[_Interpreter] = [first]
        self._made = 1
        self._pool = threading.Condition()

    def _new_interpreter(self):
        try:
            with native_stderr_to_log(self.path.name):
                interpreter = self._make()
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load TFLite model {self.path}: {exc}") from None
        return interpreter

    def _acquire(self) -> _Interpreter:
        """A free interpreter: an idle one, a new one while the pool is below its size, else
        the next one released."""
        with self._pool:
            while not self._idle and self._made >= self.max_interpreters:
                self._pool.wait()
            if self._idle:
                return self._idle.pop()  # LIFO: serial calls keep using the first one
            self._made += 1
        try:
            interpreter = self._new_interpreter()
        except BaseException:
            with self._pool:
                self._made -= 1
                self._pool.notify()
            raise
        return _Interpreter(interpreter, int(self._in["shape"][0]))

    def _release(self, slot: _Interpreter) -> None:
        with self._pool:
            self._idle.append(slot)
            self._pool.notify()

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        if self.input_dtype.kind == "f":
            return x.astype(self.input_dtype)
        scale, zero = self.input_quantization
        if not scale:
            raise ModelError(f"{self.path.name}: integer input without quantisation parameters")
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, y: np.ndarray) -> np.ndarray:
        if self.output_dtype.kind == "f":
            return y.astype(np.float32)
        scale, zero = self._out_q
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def run(self, batch_nhwc: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) float32 RGB 0-255 -> (N, Hh, Ww, K) float32, in one ``invoke``.

        The input is resized to the batch when its size changes (XNNPACK reshapes in well
        under a millisecond; one call for 4 crops of S-128 int8 took ~30% less time than
        4 calls). A file whose graph cannot take another batch runs its crops one by one.
        """
        b = _check_batch(batch_nhwc, self.input_hw)
        n = b.shape[0]
        if n == 0:
            shape = tuple(int(v) for v in self._out["shape"][1:])
            return np.zeros((0, *shape), np.float32)
        slot = self._acquire()
        try:
            return self._run_on(slot, b, n)
        finally:
            self._release(slot)

    def _run_on(self, slot: _Interpreter, b: np.ndarray, n: int) -> np.ndarray:
        if self._batched and n > 1 and self._resize(slot, n):
            out = self._invoke(slot, b)
            if out.ndim == 4 and out.shape[0] == n:
                return _check_heatmaps(out, self.path, n)
            logger.info("%s gave %s for a batch of %d; crops run one by one", self.path.name,
                        out.shape, n)
            self._batched = False
        self._resize(slot, 1)
        out = np.concatenate([self._invoke(slot, b[i:i + 1]) for i in range(n)], axis=0)
        return _check_heatmaps(out, self.path, n)

    def _invoke(self, slot: _Interpreter, b: np.ndarray) -> np.ndarray:
        slot.interpreter.set_tensor(self._in["index"], self._quantize(b))
        slot.interpreter.invoke()
        return self._dequantize(slot.interpreter.get_tensor(self._out["index"]))

    def _resize(self, slot: _Interpreter, n: int) -> bool:
        """Make the interpreter's batch ``n``; False (and batching off from then on) when
        the file's graph refuses it."""
        if n == slot.batch:
            return True
        try:
            slot.interpreter.resize_tensor_input(self._in["index"], [n, *self.input_hw, 3],
                                                 strict=False)
            slot.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            logger.info("%s cannot run a batch of %d (%s); crops run one by one",
                        self.path.name, n, exc)
            self._batched = False
            if n != 1:
                self._resize(slot, 1)
            return False
        slot.batch = n
        return True

    def close(self) -> None:
        """Drop the interpreters (a later :meth:`run` would make new ones)."""
        with self._pool:
            self.interpreter = None
            self._idle.clear()
            self._made = 0


BACKENDS = {"onnxruntime": OnnxBackend, "onnx": OnnxBackend, "tflite": TFLiteBackend}


def make_backend(path: str | os.PathLike | bytes, backend: str | None = None,
                 threads: int | None = None, input_name: str = "image",
                 output_name: str = "heatmaps", device: str | None = None) -> Backend:
    """Backend for a model file (or in-memory model bytes, then with ``backend`` given);
    ``backend=None`` picks it from the file extension. ``device`` (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ...) picks the ONNX Runtime provider; LiteRT runs on the CPU (a warning
    says so for another device)."""
    if backend is None and isinstance(path, bytes | bytearray):
        raise ValueError("an in-memory model needs backend='onnxruntime' or 'tflite'")
    if backend is None:
        backend = "tflite" if str(path).lower().endswith(".tflite") else "onnxruntime"
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(set(BACKENDS))}")
    name, _ = parse_device(device)
    if BACKENDS[backend] is OnnxBackend:
        return OnnxBackend(path, threads=threads, input_name=input_name, output_name=output_name,
                           providers=onnx_providers(device, "the pose model"))
    if name != "cpu":
        logger.warning("device %r: the %s backend runs on the CPU; for %s use an ONNX "
                       "model with onnxruntime (--precision fp32 / backend='onnxruntime')",
                       device, backend, name)
    return BACKENDS[backend](path, threads=threads, input_name=input_name, output_name=output_name)
