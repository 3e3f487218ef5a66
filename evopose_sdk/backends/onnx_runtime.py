"""ONNX Runtime: the devices it can run on (``device=`` names -> execution providers, with
the CPU as the fallback) and :class:`OnnxBackend`.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from evopose_sdk.backends.base import (
    Backend,
    RuntimeBackend,
    _check_batch,
    _check_heatmaps,
    _model_source,
)
from evopose_sdk.errors import ModelError

logger = logging.getLogger(__name__)


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


class OnnxBackend(RuntimeBackend):
    """ONNX Runtime (CPU by default) with a dynamic or fixed batch dimension.

    Args:
        path: ``.onnx`` file, or the serialised model as bytes (export parity).
        threads: intra-op threads (None = onnxruntime's default, all cores).
        input_name, output_name: tensor names (from the card); the only input/output is used
            when the file has just one.
        providers: onnxruntime execution providers (default CPU; see :func:`onnx_providers`).
    """

    name = "onnxruntime"
    aliases = ("onnx",)
    file_format = "onnx"
    suffix = ".onnx"
    label = "ONNX"
    device_capable = True
    embeds_card = True
    runtime_module = "onnxruntime"
    runtime_package = "onnxruntime"
    install_hint = "pip install onnxruntime"

    @classmethod
    def create(cls, path: str | os.PathLike | bytes, *, threads: int | None = None,
               input_name: str = "image", output_name: str = "heatmaps",
               device: str | None = None) -> Backend:
        """The pose model on ``device``'s execution provider (:func:`onnx_providers`)."""
        return cls(path, threads=threads, input_name=input_name, output_name=output_name,
                   providers=onnx_providers(device, "the pose model"))

    @staticmethod
    def read_metadata(path: str | os.PathLike) -> dict[str, str]:
        """The file's ``metadata_props`` (where export embeds the card)."""
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load ONNX model {path}: {exc}") from None
        return dict(sess.get_modelmeta().custom_metadata_map)

    def __init__(self, path: str | os.PathLike | bytes, threads: int | None = None,
                 input_name: str = "image", output_name: str = "heatmaps",
                 providers: list | None = None) -> None:
        import onnxruntime as ort

        self.path, content = _model_source(path, self.suffix)
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
