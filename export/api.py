"""``export_model``: a pose checkpoint -> ONNX and TFLite files, each with a card and a parity
report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
from evopose_sdk.backends import make_backend
from evopose_sdk.card import ONNX_METADATA_KEY, ModelCard, card_path_for, sha256_file
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.errors import did_you_mean
from evopose_sdk.export.crops import (
    CropSet,
    crops_from_coco,
    crops_from_image_dir,
    synthetic_crops,
)
from evopose_sdk.export.errors import ExportError
from evopose_sdk.export.options import (
    CALIBRATIONS,
    check_opset,
    parse_genotype,
    parse_input_size,
)
from evopose_sdk.export.portable import CARD_NOTE
from evopose_sdk.topdown import keras_run

log = logging.getLogger(__name__)

#: Output formats, in the order they are written.
FORMATS: tuple[str, ...] = ("onnx", "tflite-fp32", "tflite-fp16", "tflite-int8")
PARITY_SUFFIX = ".parity.json"
REFERENCE = "Keras model, TensorFlow backend, inference mode"
INT8_IO = {"input": "uint8 (scale/zero point in the file, ~1.0/0 for 0-255 RGB)",
           "output": "float32 (dequantised inside the graph)"}


@dataclass
class ExportedFile:
    """One written model file and its companions."""

    path: Path
    card_path: Path
    parity_path: Path
    card: ModelCard
    parity: dict[str, Any]
    seconds: float

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass
class ExportResult:
    """All files of one export run, keyed by format (``"onnx"``, ``"tflite-int8"``, ...)."""

    files: dict[str, ExportedFile] = field(default_factory=dict)

    def __getitem__(self, fmt: str) -> ExportedFile:
        return self.files[fmt]

    def summary(self) -> list[dict[str, Any]]:
        """One row per file: format, path, MB, seconds and the headline parity figures."""
        rows = []
        for fmt, f in self.files.items():
            hm, kp = f.parity["heatmap"], f.parity["keypoints_px"]
            rows.append({"format": fmt, "path": str(f.path), "size_mb": f.size_bytes / 1e6,
                         "export_s": f.seconds, "hm_max_abs": hm["max_abs_diff"],
                         "hm_mean_abs": hm["mean_abs_diff"], "hm_range": hm["ref_range"],
                         "hm_max_rel": hm["max_abs_diff_rel_range"],
                         "kp_mean_px": kp["mean"], "kp_max_px": kp["max"]})
        return rows


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """``None``/``"all"`` -> every format; accepts ``onnx``, ``tflite`` (all three), ``fp32``,
    ``tflite-fp16``, ``int8``... comma-separated or as a list."""
    if formats is None:
        return list(FORMATS)
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for raw in items:
        item = str(raw).strip().lower().replace("_", "-")
        if not item:
            continue
        if item == "all":
            names = list(FORMATS)
        elif item == "tflite":
            names = [f for f in FORMATS if f.startswith("tflite")]
        elif item in FORMATS:
            names = [item]
        elif "tflite-" + item in FORMATS:
            names = ["tflite-" + item]
        else:
            hint = did_you_mean(item, [*FORMATS, "all", "tflite"])
            raise ExportError(f"unknown format {raw!r}; " + (
                hint or f"choose from {', '.join(FORMATS)}, tflite, all"))
        chosen += [n for n in names if n not in chosen]
    if not chosen:
        raise ExportError("no output format chosen")
    return [f for f in FORMATS if f in chosen]


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "ai-edge-litert"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _gather_crops(calib_data: Sequence[str | Path], calib_image_dirs: Sequence[str | Path | None],
                  calib_images: str | Path | None, input_hw: tuple[int, int], n: int) -> CropSet:
    if calib_data:
        return crops_from_coco(calib_data, input_hw, n, image_dirs=list(calib_image_dirs) or None)
    if calib_images is not None:
        return crops_from_image_dir(calib_images, input_hw, n)
    return synthetic_crops(input_hw, n)


def _check_sources(calib_data, calib_images) -> None:
    for p in calib_data:
        if not Path(p).is_file():
            raise ExportError(f"calibration annotations not found: {p}")
    if calib_images is not None and not Path(calib_images).is_dir():
        raise ExportError(f"calibration image folder not found: {calib_images}")


def _card_parity(report: dict[str, Any]) -> dict[str, Any]:
    hm, kp = report["heatmap"], report["keypoints_px"]
    return {
        "reference": "keras", "n_crops": report["crops"]["n"],
        "crops": report["crops"]["description"],
        "heatmap_max_abs_diff": hm["max_abs_diff"], "heatmap_mean_abs_diff": hm["mean_abs_diff"],
        "heatmap_range": [hm["ref_min"], hm["ref_max"]],
        "heatmap_max_abs_diff_rel_range": hm["max_abs_diff_rel_range"],
        "keypoint_decode": kp["decode"], "keypoint_mean_px": kp["mean"],
        "keypoint_max_px": kp["max"],
    }


def _representative(images: np.ndarray):
    """TFLite representative-dataset factory over crops (N, H, W, 3) float32."""

    def gen():
        for x in images:
            yield [x[None].astype(np.float32)]

    return gen


def export_model(
    checkpoint: str | Path | None = None,
    out_dir: str | Path = "exported",
    *,
    formats: str | Sequence[str] | None = None,
    size: str | None = None,
    genotype: str | Sequence[Sequence[int]] | None = None,
    input_size: str | Sequence[int] | None = None,
    name: str | None = None,
    stem: str | None = None,
    trained: bool | None = None,
    training_data: Any = None,
    metrics: dict[str, Any] | None = None,
    opset: int = 17,
    calib_data: Sequence[str | Path] = (),
    calib_image_dirs: Sequence[str | Path | None] = (),
    calib_images: str | Path | None = None,
    crops: CropSet | None = None,
    n_parity: int = 16,
    n_calib: int = 32,
    decode: str = "dark",
    threads: int | None = None,
    calibration: str = "mse",
) -> ExportResult:
    """Export a pose network to ONNX and/or TFLite, with a card and a parity report per file.

    Args:
        checkpoint: ``.keras`` or legacy ``.h5`` file; None builds random weights from
            ``size``/``genotype`` (card ``trained=False``).
        out_dir: folder for ``<stem>.onnx``, ``<stem>_{fp32,fp16,int8}.tflite``, their cards
            (``<file>.json``) and parity reports (``<file>.parity.json``).
        formats: subset of :data:`FORMATS` (``"onnx,tflite-int8"``, ``"tflite"``, ``"all"``).
        opset: ONNX opset, 13..18 (default 17).
        calib_data: COCO keypoint JSON files whose person boxes give the crops for int8
            calibration and parity; ``calib_image_dirs`` gives each file's image folder
            (default ``<json dir>/images``). ``calib_images``: a folder of person photos used
            whole / centre-cropped instead. ``crops``: ready crops (N, H, W, 3) RGB 0-255.
            Without any of these, int8 is refused and parity uses synthetic images.
        n_parity: crops used for parity (the first ones); ``n_calib``: crops for int8
            calibration (the next ones, disjoint from the parity crops when enough exist).
        decode: heatmap decoder for the keypoint parity figures.
        calibration: int8 activation ranges, ``"mse"`` (least round-trip error per tensor,
            the default) or ``"minmax"`` (the converter's calibration min/max).

    Returns:
        :class:`ExportResult`, one :class:`ExportedFile` per format.

    Raises:
        ExportError: bad options or input files (checked before anything is written), or a
            failed conversion.
    """
    chosen = parse_formats(formats)
    if "onnx" in chosen:
        opset = check_opset(opset)
    parse_genotype(genotype)
    parse_input_size(input_size)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ExportError(f"checkpoint not found: {checkpoint}")
    calib_data = [Path(p) for p in calib_data]
    _check_sources(calib_data, calib_images)
    real = crops is not None or bool(calib_data) or calib_images is not None
    if "tflite-int8" in chosen and not real:
        raise ExportError(
            "int8 TFLite needs real person crops for calibration: pass --calib-data "
            "ANNOTATIONS.json (COCO keypoints) or --calib-images DIR, or leave tflite-int8 out "
            "of --formats")
    if calibration not in CALIBRATIONS:
        raise ExportError(f"calibration must be one of {CALIBRATIONS}; "
                          f"received {calibration!r}")
    if n_parity < 1 or n_calib < 1:
        raise ExportError(f"n_parity and n_calib must be >= 1; received {n_parity}, {n_calib}")

    from evopose_sdk.export import converters, parity
    from evopose_sdk.export.source import load_source

    source = load_source(checkpoint, size=size, genotype=genotype, input_hw=input_size, name=name,
                         trained=trained)
    if not source.trained:
        log.warning("%s has random weights: its card says trained=false and its heatmaps "
                    "are near-flat noise", source.name)
    if crops is None:
        crops = _gather_crops(calib_data, calib_image_dirs, calib_images, source.input_hw,
                              n_parity + n_calib)
    elif crops.images.shape[1:] != (*source.input_hw, 3):
        raise ExportError(f"crops are {crops.images.shape[1:]}, the model takes "
                          f"{(*source.input_hw, 3)}")
    parity_set = crops.take(slice(0, n_parity))
    calib_set = crops.take(slice(n_parity, None)) if len(crops) > n_parity else parity_set
    codec = HeatmapCodec(source.input_hw, source.heatmap_stride, decode_method=decode)
    reference = parity.parity_heatmaps(keras_run(source.model), parity_set.images, codec)

    out = Path(out_dir)
    stem = stem or source.file_stem
    versions = _versions()
    result = ExportResult()
    for fmt in chosen:
        t0 = time.perf_counter()
        precision = "fp32" if fmt == "onnx" else fmt.split("-")[1]
        recipe: dict[str, Any] = {"export": {"tool": "evopose-export", "source": source.origin,
                                             "versions": versions}}
        io: dict[str, Any]
        if fmt == "onnx":
            proto = converters.to_onnx(source.model, opset)
            graph_bytes = proto.SerializeToString()
            backend = make_backend(graph_bytes, "onnxruntime", threads)
            candidate = parity.parity_heatmaps(backend.run, parity_set.images, codec)
            one = backend.run(parity_set.images[:1])
            if not np.allclose(one, candidate[:1], rtol=1e-4, atol=1e-6 * (1 + np.abs(one).max())):
                raise ExportError("the ONNX graph gives different results at batch 1 and "
                                  f"batch {min(len(parity_set), parity.PARITY_BATCH)}")
            recipe["export"]["opset"] = opset
            recipe["export"]["conv_transpose"] = CARD_NOTE
            io = {"input": "float32 (N, H, W, 3)", "output": "float32 (N, h, w, K)"}
            path = out / f"{stem}.onnx"
        else:
            rep = None
            if precision == "int8":
                rep = _representative(calib_set.images)
                recipe["export"]["calibration"] = {"n_crops": len(calib_set),
                                                   "crops": calib_set.description,
                                                   "disjoint_from_parity": calib_set is not parity_set,
                                                   "ranges": calibration}
                io = dict(INT8_IO)
            else:
                io = {"input": "float32 (1, H, W, 3)", "output": "float32 (1, h, w, K)"}
            file_bytes = converters.to_tflite(source.model, precision, rep, calibration)
            backend = make_backend(file_bytes, "tflite", threads)
            candidate = parity.parity_heatmaps(backend.run, parity_set.images, codec)
            io["input_quantization"] = [float(v) for v in backend.input_quantization]
            path = out / f"{stem}_{precision}.tflite"

        backend.close()
        report = parity.compare_heatmaps(reference, candidate, codec)
        report = {"file": path.name, "format": fmt, "precision": precision,
                  "reference": REFERENCE, "model_source": source.origin,
                  "trained": source.trained,
                  "crops": {"n": len(parity_set), "description": parity_set.description,
                            "real": real, "sources": parity_set.sources},
                  "io": io, **report}
        if not source.trained:
            report["note"] = ("random weights: heatmaps are near-flat, so keypoint "
                              "disagreement reflects noise peaks; judge parity on the heatmap "
                              "differences relative to ref_range")
        card = ModelCard(
            name=source.name, input_size=source.input_hw, heatmap_stride=source.heatmap_stride,
            **source.keypoints.to_dict(),
            genotype=source.genotype, file_format="onnx" if fmt == "onnx" else "tflite",
            precision=precision, trained=source.trained, training_data=training_data,
            metrics={**(metrics or {}), "parity": _card_parity(report)}, recipe=recipe)
        if fmt == "onnx":
            import onnx

            del proto.metadata_props[:]
            entry = proto.metadata_props.add()
            entry.key, entry.value = ONNX_METADATA_KEY, card.to_json()
            file_bytes = proto.SerializeToString()
            del proto
        atomic_write_bytes(path, file_bytes)
        card.sha256 = sha256_file(path)
        card.save(card_path_for(path))
        parity_path = path.with_name(path.name + PARITY_SUFFIX)
        atomic_write_text(parity_path, json.dumps(report, indent=2) + "\n")
        seconds = time.perf_counter() - t0
        result.files[fmt] = ExportedFile(path, card_path_for(path), parity_path, card, report,
                                         seconds)
        hm = report["heatmap"]
        log.info("%s: %s (%.2f MB, %.1f s) heatmap max|diff| %.3g (%.2g of range %.3g), "
                 "keypoints mean %.2f px max %.2f px", fmt, path, path.stat().st_size / 1e6,
                 seconds, hm["max_abs_diff"], hm["max_abs_diff_rel_range"], hm["ref_range"],
                 report["keypoints_px"]["mean"], report["keypoints_px"]["max"])
        if fmt == "onnx":
            onnx.checker.check_model(str(path))
    return result


def update_card(model_path: str | Path, metrics: dict[str, Any] | None = None,
                **fields: Any) -> ModelCard:
    """Merge measured figures (and other card fields) into a model's card after export.

    The sidecar card is rewritten and, for ONNX, the embedded card too; since that changes the
    file's bytes, the card's sha256 is recomputed. Both files are written atomically.

    Args:
        model_path: an exported ``.onnx`` or ``.tflite`` file with its ``<file>.json`` card.
        metrics: merged into ``card.metrics`` (new keys added, existing keys replaced).
        fields: other card fields to set (``training_data=...``, ``recipe=...``).

    Returns:
        The updated :class:`ModelCard`.
    """
    path = Path(model_path)
    card = ModelCard.load(card_path_for(path))
    unknown = sorted(set(fields) - set(card.to_dict()))
    if unknown:
        raise ExportError(f"unknown card fields: {', '.join(unknown)}")
    card.metrics.update(metrics or {})
    for key, value in fields.items():
        setattr(card, key, value)
    card.validate()
    if card.file_format == "onnx":
        import onnx

        proto = onnx.load(str(path))
        card.sha256 = ""
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, card.to_json()
        atomic_write_bytes(path, proto.SerializeToString())
    card.sha256 = sha256_file(path)
    card.save(card_path_for(path))
    return card
