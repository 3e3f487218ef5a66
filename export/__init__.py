"""Export stage: Keras checkpoint -> ONNX and TFLite (fp32/fp16/int8) with cards and parity.

Installed as ``evopose_sdk.export`` (extra ``[export]``)::

    from evopose_sdk.export import export_model
    result = export_model("evopose2d_s.keras", "models/", formats="onnx,tflite",
                          calib_data=["data/coco128/annotations.json"])

The heavy imports (TensorFlow, tf2onnx) happen on first use, so ``import evopose_sdk.export``
stays cheap and the CLI's ``--help`` is fast.
"""

from __future__ import annotations

from typing import Any

from evopose_sdk.export.errors import ExportError

_LAZY = {
    "export_model": "evopose_sdk.export.api",
    "update_card": "evopose_sdk.export.api",
    "ExportResult": "evopose_sdk.export.api",
    "ExportedFile": "evopose_sdk.export.api",
    "FORMATS": "evopose_sdk.export.formats",
    "parse_formats": "evopose_sdk.export.api",
    "CropSet": "evopose_sdk.export.crops",
    "crops_from_boxes": "evopose_sdk.export.crops",
    "crops_from_coco": "evopose_sdk.export.crops",
    "crops_from_image_dir": "evopose_sdk.export.crops",
    "load_source": "evopose_sdk.export.source",
    "export_yolo": "evopose_sdk.export.yolo",
}

__all__ = ["ExportError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evopose_sdk.export' has no attribute {name!r}")
