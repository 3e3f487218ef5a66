"""LiteRT (TFLite): :class:`TFLiteBackend` for fp32, fp16 and int8 files, with a small pool of
interpreters for calls from several threads.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from evopose_sdk.backends.base import (
    RuntimeBackend,
    _check_batch,
    _check_heatmaps,
    _model_source,
    native_stderr_to_log,
)
from evopose_sdk.errors import ModelError

logger = logging.getLogger(__name__)


@dataclass
class _Interpreter:
    """One LiteRT interpreter of a :class:`TFLiteBackend`'s pool and the batch size its input
    is allocated for."""

    interpreter: object
    batch: int


class TFLiteBackend(RuntimeBackend):
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

    name = "tflite"
    file_format = "tflite"
    suffix = ".tflite"
    label = "TFLite"
    runtime_module = "ai_edge_litert"
    runtime_package = "ai-edge-litert"
    install_hint = "pip install 'evopose-sdk[tflite]'"

    def __init__(self, path: str | os.PathLike | bytes, threads: int | None = None,
                 input_name: str = "image", output_name: str = "heatmaps",
                 max_interpreters: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelError(f"the {self.label} backend needs {self.runtime_package}: "
                             f"{self.install_hint}") from None
        self.path, content = _model_source(path, self.suffix)
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
