"""The export formats: one :class:`ExportFormat` entry per kind of file ``export_model`` writes.

Each entry converts the Keras model to file bytes, says which runtime backend
(:data:`evopose_sdk.backends.BACKENDS`) runs the file for parity, what its card records and
how the card rides in the file. :func:`~evopose_sdk.export.api.export_model` iterates
:data:`EXPORT_FORMATS`; a new format is a subclass here and its entry there. Importing this
module loads no TensorFlow (the converters are imported when a format converts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evopose_sdk.backends import BACKENDS, Backend
from evopose_sdk.card import ONNX_METADATA_KEY, ModelCard
from evopose_sdk.export.errors import ExportError
from evopose_sdk.export.options import check_opset
from evopose_sdk.export.portable import CARD_NOTE

if TYPE_CHECKING:
    from evopose_sdk.export.crops import CropSet

INT8_IO = {"input": "uint8 (scale/zero point in the file, ~1.0/0 for 0-255 RGB)",
           "output": "float32 (dequantised inside the graph)"}


@dataclass(frozen=True)
class ExportJob:
    """What a conversion needs besides the model: the options and the crops."""

    opset: int | str
    calibration: str
    parity_set: CropSet
    calib_set: CropSet


@dataclass
class Converted:
    """A converted model before its card: the bytes, the card's ``io`` and ``recipe.export``
    entries."""

    data: bytes
    io: dict[str, Any]
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportFormat:
    """One output format: its name, the runtime backend that runs it, its precision.

    Attributes:
        name: the ``formats=`` name (``"onnx"``, ``"tflite-int8"``).
        backend: the runtime backend name that runs the file (parity, and the card's
            ``file_format`` through it).
        precision: the card's precision.
        group: a ``formats=`` word that picks every format of the group (``"tflite"``).
        short: another ``formats=`` word for it alone (``"int8"`` -> ``"tflite-int8"``).
        needs_calibration: refused without real person crops.
    """

    name: str
    backend: str
    precision: str = "fp32"
    group: str | None = None
    short: str | None = None
    needs_calibration: bool = False

    @property
    def file_format(self) -> str:
        """The card's ``file_format``: the runtime backend's."""
        return BACKENDS[self.backend].file_format

    @property
    def embeds_card(self) -> bool:
        """Whether the file carries its card (:meth:`embed_card` changes its bytes)."""
        return BACKENDS[self.backend].embeds_card

    @property
    def title(self) -> str:
        """``"int8 TFLite"``: the precision and the format in messages."""
        return f"{self.precision} {BACKENDS[self.backend].label}"

    def file_name(self, stem: str) -> str:
        """The file's name for a stem."""
        return f"{stem}{BACKENDS[self.backend].suffix}"

    def check_options(self, opset: int | str) -> None:
        """Refuse a bad option of this format (before anything is built or written)."""

    def convert(self, model: Any, job: ExportJob) -> Converted:
        """The model's file bytes, the card's io and recipe entries."""
        raise NotImplementedError

    def check_run(self, converted: Converted, backend: Backend, candidate: np.ndarray,
                  job: ExportJob) -> None:
        """Checks and io facts of the file as the backend runs it (``candidate``: its
        heatmaps of the parity crops)."""

    def embed_card(self, data: bytes, card: ModelCard) -> bytes:
        """The file bytes carrying ``card`` (unchanged where the format has no place for it)."""
        return data

    def check_file(self, path: Path) -> None:
        """A last check of the written file."""


@dataclass(frozen=True)
class OnnxFormat(ExportFormat):
    """ONNX through tf2onnx, dynamic batch, the card embedded in the metadata."""

    name: str = "onnx"
    backend: str = "onnxruntime"

    def check_options(self, opset: int | str) -> None:
        check_opset(opset)

    def convert(self, model: Any, job: ExportJob) -> Converted:
        from evopose_sdk.export import converters

        opset = check_opset(job.opset)
        data = converters.to_onnx(model, opset).SerializeToString()
        return Converted(data, {"input": "float32 (N, H, W, 3)",
                                "output": "float32 (N, h, w, K)"},
                         {"opset": opset, "conv_transpose": CARD_NOTE})

    def check_run(self, converted: Converted, backend: Backend, candidate: np.ndarray,
                  job: ExportJob) -> None:
        from evopose_sdk.export import parity

        one = backend.run(job.parity_set.images[:1])
        if not np.allclose(one, candidate[:1], rtol=1e-4, atol=1e-6 * (1 + np.abs(one).max())):
            raise ExportError("the ONNX graph gives different results at batch 1 and "
                              f"batch {min(len(job.parity_set), parity.PARITY_BATCH)}")

    def embed_card(self, data: bytes, card: ModelCard) -> bytes:
        import onnx

        proto = onnx.load_from_string(data)
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, card.to_json()
        return proto.SerializeToString()

    def check_file(self, path: Path) -> None:
        import onnx

        onnx.checker.check_model(str(path))


@dataclass(frozen=True)
class TFLiteFormat(ExportFormat):
    """TFLite at one precision, batch 1 (int8: full integer, calibrated on real crops)."""

    backend: str = "tflite"
    group: str | None = "tflite"

    def file_name(self, stem: str) -> str:
        return f"{stem}_{self.precision}{BACKENDS[self.backend].suffix}"

    def convert(self, model: Any, job: ExportJob) -> Converted:
        from evopose_sdk.export import converters

        rep, recipe = None, {}
        if self.precision == "int8":
            rep = _representative(job.calib_set.images)
            recipe["calibration"] = {"n_crops": len(job.calib_set),
                                     "crops": job.calib_set.description,
                                     "disjoint_from_parity": job.calib_set is not job.parity_set,
                                     "ranges": job.calibration}
            io = dict(INT8_IO)
        else:
            io = {"input": "float32 (1, H, W, 3)", "output": "float32 (1, h, w, K)"}
        data = converters.to_tflite(model, self.precision, rep, job.calibration)
        return Converted(data, io, recipe)

    def check_run(self, converted: Converted, backend: Backend, candidate: np.ndarray,
                  job: ExportJob) -> None:
        converted.io["input_quantization"] = [float(v) for v in backend.input_quantization]


def _tflite(precision: str) -> TFLiteFormat:
    return TFLiteFormat(name=f"tflite-{precision}", precision=precision, short=precision,
                        needs_calibration=precision == "int8")


#: Every export format, in the order they are written.
EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    OnnxFormat(), _tflite("fp32"), _tflite("fp16"), _tflite("int8"))
#: Output format names, in the order they are written.
FORMATS: tuple[str, ...] = tuple(f.name for f in EXPORT_FORMATS)
#: ``formats=`` words that pick a group of formats (``"tflite"``: all three)
FORMAT_GROUPS: tuple[str, ...] = tuple(dict.fromkeys(f.group for f in EXPORT_FORMATS if f.group))


def export_format(name: str) -> ExportFormat:
    """The entry of a format name of :data:`FORMATS`."""
    return next(f for f in EXPORT_FORMATS if f.name == name)


def format_for_card(card: ModelCard) -> ExportFormat:
    """The entry that writes files like the one ``card`` describes (format and precision)."""
    same = [f for f in EXPORT_FORMATS if f.file_format == card.file_format]
    if not same:
        raise ExportError(f"no export format writes {card.file_format!r} files")
    return next((f for f in same if f.precision == card.precision), same[0])


def _representative(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """TFLite representative-dataset factory over crops (N, H, W, 3) float32."""

    def gen() -> Iterator[list[np.ndarray]]:
        for x in images:
            yield [x[None].astype(np.float32)]

    return gen


__all__ = ["EXPORT_FORMATS", "FORMATS", "FORMAT_GROUPS", "INT8_IO", "Converted", "ExportFormat",
           "ExportJob", "OnnxFormat", "TFLiteFormat", "export_format", "format_for_card"]
