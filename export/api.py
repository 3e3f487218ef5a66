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

from evopose_sdk.atomic import atomic_write_bytes, atomic_write_text
from evopose_sdk.backends import make_backend
from evopose_sdk.card import ModelCard, card_path_for, sha256_file
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.errors import did_you_mean
from evopose_sdk.export.crops import (
    CropSet,
    crops_from_coco,
    crops_from_image_dir,
    synthetic_crops,
)
from evopose_sdk.export.errors import ExportError
from evopose_sdk.export.formats import (
    EXPORT_FORMATS,
    FORMAT_GROUPS,
    FORMATS,
    ExportJob,
    export_format,
    format_for_card,
)
from evopose_sdk.export.options import CALIBRATIONS, parse_genotype, parse_input_size
from evopose_sdk.topdown import keras_run

log = logging.getLogger(__name__)

PARITY_SUFFIX = ".parity.json"
REFERENCE = "Keras model, TensorFlow backend, inference mode"


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
    ``tflite-fp16``, ``int8``... comma-separated or as a list (:mod:`~evopose_sdk.export.
    formats`: names, groups and short names)."""
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
        elif item in FORMAT_GROUPS:
            names = [f.name for f in EXPORT_FORMATS if f.group == item]
        elif item in FORMATS:
            names = [item]
        elif any(f.short == item for f in EXPORT_FORMATS):
            names = [f.name for f in EXPORT_FORMATS if f.short == item]
        else:
            hint = did_you_mean(item, [*FORMATS, "all", *FORMAT_GROUPS])
            raise ExportError(f"unknown format {raw!r}; " + (
                hint or f"choose from {', '.join((*FORMATS, *FORMAT_GROUPS))}, all"))
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
    chosen = [export_format(f) for f in parse_formats(formats)]
    for fmt in chosen:
        fmt.check_options(opset)
    parse_genotype(genotype)
    parse_input_size(input_size)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ExportError(f"checkpoint not found: {checkpoint}")
    calib_data = [Path(p) for p in calib_data]
    _check_sources(calib_data, calib_images)
    real = crops is not None or bool(calib_data) or calib_images is not None
    needs = next((f for f in chosen if f.needs_calibration), None)
    if needs is not None and not real:
        raise ExportError(
            f"{needs.title} needs real person crops for "
            "calibration: pass --calib-data ANNOTATIONS.json (COCO keypoints) or --calib-images "
            f"DIR, or leave {needs.name} out of --formats")
    if calibration not in CALIBRATIONS:
        raise ExportError(f"calibration must be one of {CALIBRATIONS}; "
                          f"received {calibration!r}")
    if n_parity < 1 or n_calib < 1:
        raise ExportError(f"n_parity and n_calib must be >= 1; received {n_parity}, {n_calib}")

    from evopose_sdk.export import parity
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
    job = ExportJob(opset, calibration, parity_set, calib_set)
    result = ExportResult()
    for fmt in chosen:
        t0 = time.perf_counter()
        converted = fmt.convert(source.model, job)
        backend = make_backend(converted.data, fmt.backend, threads)
        candidate = parity.parity_heatmaps(backend.run, parity_set.images, codec)
        fmt.check_run(converted, backend, candidate, job)
        backend.close()
        path = out / fmt.file_name(stem)
        report = parity.compare_heatmaps(reference, candidate, codec)
        report = {"file": path.name, "format": fmt.name, "precision": fmt.precision,
                  "reference": REFERENCE, "model_source": source.origin,
                  "trained": source.trained,
                  "crops": {"n": len(parity_set), "description": parity_set.description,
                            "real": real, "sources": parity_set.sources},
                  "io": converted.io, **report}
        if not source.trained:
            report["note"] = ("random weights: heatmaps are near-flat, so keypoint "
                              "disagreement reflects noise peaks; judge parity on the heatmap "
                              "differences relative to ref_range")
        recipe = {"export": {"tool": "evopose-export", "source": source.origin,
                             "versions": versions, **converted.recipe}}
        card = ModelCard(
            name=source.name, input_size=source.input_hw, heatmap_stride=source.heatmap_stride,
            **source.keypoints.to_dict(),
            genotype=source.genotype, file_format=fmt.file_format,
            precision=fmt.precision, trained=source.trained, training_data=training_data,
            metrics={**(metrics or {}), "parity": _card_parity(report)}, recipe=recipe)
        atomic_write_bytes(path, fmt.embed_card(converted.data, card))
        del converted
        card.sha256 = sha256_file(path)
        card.save(card_path_for(path))
        parity_path = path.with_name(path.name + PARITY_SUFFIX)
        atomic_write_text(parity_path, json.dumps(report, indent=2) + "\n")
        seconds = time.perf_counter() - t0
        result.files[fmt.name] = ExportedFile(path, card_path_for(path), parity_path, card,
                                              report, seconds)
        hm = report["heatmap"]
        log.info("%s: %s (%.2f MB, %.1f s) heatmap max|diff| %.3g (%.2g of range %.3g), "
                 "keypoints mean %.2f px max %.2f px", fmt.name, path, path.stat().st_size / 1e6,
                 seconds, hm["max_abs_diff"], hm["max_abs_diff_rel_range"], hm["ref_range"],
                 report["keypoints_px"]["mean"], report["keypoints_px"]["max"])
        fmt.check_file(path)
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
    fmt = format_for_card(card)
    if fmt.embeds_card:
        card.sha256 = ""
        atomic_write_bytes(path, fmt.embed_card(path.read_bytes(), card))
    card.sha256 = sha256_file(path)
    card.save(card_path_for(path))
    return card
