"""The options of :class:`~evopose_sdk.PoseEstimator`: :class:`PoseEstimatorOptions` (each
option, its default and its checks; a preset's values under the caller's), and the precision
a shipped model runs at when none is asked for (:func:`default_precision`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from evopose_sdk.backends import (
    BACKEND_NAMES,
    BACKENDS,
    backend_for_format,
    format_of_backend,
    parse_device,
)
from evopose_sdk.card import ModelCard
from evopose_sdk.decode import DECODE_METHODS
from evopose_sdk.errors import did_you_mean, or_list
from evopose_sdk.io import DEFAULT_MAX_IMAGE_PIXELS
from evopose_sdk.presets import Preset, get_preset
from evopose_sdk.registry import DEFAULT_MODEL, available_models
from evopose_sdk.topdown import DEFAULT_KEYPOINT_SCORE_FLOOR

logger = logging.getLogger(__name__)


def _check_option_names(given: dict[str, Any], known: set[str], what: str) -> None:
    """Raise TypeError for option names not in ``known``, suggesting the nearest."""
    unknown = sorted(set(given) - known)
    if unknown:
        hints = [f"{u!r}" + (f" ({h})" if (h := did_you_mean(u, known)) else "")
                 for u in unknown]
        raise TypeError(f"unknown {what} option(s): {', '.join(hints)}; known: "
                        f"{', '.join(sorted(known))}")


@dataclass
class PoseEstimatorOptions:
    """Options of :class:`PoseEstimator` (all keyword arguments of its constructor).

    Attributes:
        model: shipped model name (default :data:`~evopose_sdk.registry.DEFAULT_MODEL`) or
            path to ``.onnx`` / ``.tflite``.
        detector: ``"default"`` (SSD-MobileNetV2), ``"yolox"`` (YOLOX-nano), ``"whole-image"``,
            a YOLO or YOLOX ``.onnx`` path, a ``.pt`` path (ultralytics), or a
            :class:`~evopose_sdk.detectors.Detector`.
        flip_test: average the heatmaps of the crop and of its mirror image. None (default):
            by source (:meth:`PoseEstimator.flip_for`): on for photos (:meth:`~PoseEstimator.estimate`
            on an image or a list, an image folder in :meth:`~PoseEstimator.stream`), where it
            buys about +0.013 dev_val AP for ~2x the pose network's time; off for video and
            webcam frames. True / False: always / never. The YOLOX detector follows it: with
            the flip test it also looks at the mirror image (twice its time; on dev_val recall
            0.780 vs 0.770 at 0.54 vs 0.62 false boxes per image).
        backend: ``"onnxruntime"`` or ``"tflite"``; None (default) picks it from the file
            found: ONNX for a shipped model name, unless ``precision`` exists only as TFLite.
        threads: pose-network threads (None = the runtime's default: one for TFLite, all
            cores for ONNX Runtime).
        detect_every: on a video or webcam, :meth:`PoseEstimator.stream` runs the person
            detector every k frames and crops follow the keypoints in between, when its own
            ``detect_every`` is not given. None (default):
            :data:`~evopose_sdk.video.DEFAULT_DETECT_EVERY` (3). Photos always get the
            detector on every image (:meth:`PoseEstimator.detect_every_for`).
        detector_threads: person-detector threads (None = the detector's default: one for
            the shipped YOLOX and SSD, which in a video run beside the pose network).
        decode: ``"dark"``, ``"quarter"`` or ``"argmax"``.
        box_padding: crop = box at the model's aspect ratio times this.
        max_people: pose is run for at most this many boxes (highest detector scores).
        oks_nms: OKS threshold for dropping duplicate people (None = off).
        detector_score_threshold, detector_nms_iou: override the detector's defaults.
        keypoint_score_floor: keypoint scores at or below this are left out of the
            instance score mean (a person with none above it gets the plain mean).
        precision: pick a shipped model's precision by name (``"fp32"``, ``"fp16"``, ``"int8"``);
            None (default) with no ``backend``: :func:`default_precision` (int8 when its card
            shows it within 1 AP of fp32, as for ``evopose2d-s``), else the most precise.
        device: where ONNX Runtime runs the pose model and an ONNX detector: ``"cpu"``
            (None, the default), ``"cuda"`` / ``"cuda:1"``, ``"tensorrt"``, ``"rocm"``,
            ``"directml"``, ``"coreml"``, ``"openvino"``. A provider the installed onnxruntime
            lacks (``onnxruntime-gpu`` brings CUDA) gives the CPU and a warning; the TFLite
            backend always runs on the CPU, so a shipped name with a GPU device picks the
            fp32 ONNX file. The device in use: :attr:`PoseEstimator.device`.
        verify_sha256: check the card's sha256 against the model file on load.
        max_image_pixels: refuse larger images (InputError).
        max_batch: crops per model call (None = all crops of an image in one call). 8 by
            default: onnxruntime keeps memory for the largest batch it has run, so without a
            cap a video's peak grew with its most crowded frame (fp32, flip: 384 MiB after
            20 frames of vtest.avi, 718 MiB after 150).
    """

    model: str | os.PathLike = DEFAULT_MODEL
    detector: Any = "default"
    flip_test: bool | None = None
    backend: str | None = None
    threads: int | None = None
    detector_threads: int | None = None
    detect_every: int | None = None
    decode: str = "dark"
    box_padding: float = 1.25
    max_people: int = 32
    oks_nms: float | None = 0.9
    detector_score_threshold: float | None = None
    detector_nms_iou: float | None = None
    keypoint_score_floor: float = DEFAULT_KEYPOINT_SCORE_FLOOR
    precision: str | None = None
    device: str | None = None
    verify_sha256: bool = True
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_batch: int | None = 8
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.flip_test is not None and not isinstance(self.flip_test, bool | np.bool_):
            raise ValueError(f"flip_test must be True, False or None; received {self.flip_test!r}")
        if self.decode not in DECODE_METHODS:
            raise ValueError(f"decode must be one of {DECODE_METHODS}; received {self.decode!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be {or_list(BACKEND_NAMES)}; received "
                             f"{self.backend!r}")
        if not self.box_padding > 0:
            raise ValueError(f"box_padding must be positive; received {self.box_padding}")
        if int(self.max_people) < 1:
            raise ValueError(f"max_people must be >= 1; received {self.max_people}")
        if self.oks_nms is not None and not 0 < self.oks_nms <= 1:
            raise ValueError(f"oks_nms must be in (0, 1] or None; received {self.oks_nms}")
        if self.max_batch is not None and int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1 or None; received {self.max_batch}")
        parse_device(self.device)  # ValueError naming the known devices
        for name in ("threads", "detector_threads", "detect_every"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be >= 1 or None; received {value}")
        if self.detect_every is not None and not isinstance(self.detect_every, int | np.integer):
            raise ValueError(f"detect_every must be an integer >= 1 or None; received "
                             f"{self.detect_every!r}")

    @classmethod
    def from_preset(cls, preset: str | Preset | None = None, **overrides: Any
                    ) -> PoseEstimatorOptions:
        """The options of a named preset (:data:`~evopose_sdk.presets.PRESETS`: ``"default"``,
        ``"fast"``, ``"accurate"``), with ``overrides`` winning over the preset's values.

        Raises:
            ValueError: an unknown preset. TypeError: an unknown option name.
        """
        chosen = get_preset(preset)
        _check_option_names(overrides, {f.name for f in fields(cls)}, "PoseEstimator")
        return cls(**{**chosen.options(), **overrides})


#: A shipped model's int8 file is the default when its card's dev_val AP (ground-truth boxes,
#: flip on) is at most this far below the fp32 file's (the accuracy goal: "whichever costs <= 1 AP").
INT8_MAX_AP_DROP = 0.01


def _card_ap(card: ModelCard) -> float | None:
    rows = (card.metrics or {}).get("dev_val", {}).get("rows", [])
    ap = [r["AP"] for r in rows if r.get("boxes") == "gt" and r.get("flip") and "AP" in r]
    return float(ap[0]) if ap else None


def default_precision(model: str | os.PathLike, backend: str | None = None) -> str | None:
    """The precision a shipped model name runs at when none is asked for: ``"int8"`` when its
    int8 card measures at most :data:`INT8_MAX_AP_DROP` AP below fp32 and LiteRT is installed
    (the int8 file is TFLite), else None (the registry's pick: the most precise file).
    ``backend="tflite"`` asks the same of the TFLite files (int8 is also the fastest of
    them: 35.6 vs 19.5 frames/s for fp16); ``"onnxruntime"``: None (fp32 is the ONNX file)."""
    name = os.fspath(model).lower()
    cards = {m.card.precision: m.card for m in available_models() if m.card.name.lower() == name}
    if "int8" not in cards or "fp32" not in cards:
        return None
    runtime = backend_for_format(cards["int8"].file_format)
    if backend is not None and format_of_backend(backend) != runtime.file_format:
        return None  # the backend asked for cannot run the int8 file
    ap8, ap32 = _card_ap(cards["int8"]), _card_ap(cards["fp32"])
    if ap8 is None or ap32 is None or ap32 - ap8 > INT8_MAX_AP_DROP:
        return None
    if importlib.util.find_spec(runtime.runtime_module) is None and backend is None:
        logger.info("%s int8 (%.3f AP vs %.3f fp32) needs %s (%s); running fp32", model, ap8,
                    ap32, runtime.runtime_package, runtime.install_hint)
        return None
    return "int8"
