"""Model registry: a model name or path -> (model file, card), sha256 verified.

Names are looked up among the cards shipped in the ``evopose_sdk.models`` package folder
(:data:`MODELS_DIR`): a card ``<file>.json`` whose ``name`` (or file stem) matches. A path to
an ``.onnx`` / ``.tflite`` file is read with the card next to it (``<file>.json``); for ONNX
without one, the card embedded in the file's metadata is used (it carries no sha256).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from evopose_sdk.card import (
    CARD_SUFFIX,
    ONNX_METADATA_KEY,
    CardError,
    ModelCard,
    card_path_for,
    verify_sha256,
)
from evopose_sdk.errors import ModelError

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".onnx", ".tflite")

#: The shipped model used when none is named: EvoPose2D-S at the paper's 256x192 input,
#: trained on CPU in four stages, the last quantisation-aware (see its card and the README).
#: ``evopose2d-s-128`` (same genotype at 128x96, about 4x fewer FLOPs) is the faster one.
DEFAULT_MODEL = "evopose2d-s"


def models_dir() -> Path:
    """Folder of the shipped models (``evopose_sdk.models``); ``EVOPOSE_MODELS_DIR`` overrides."""
    env = os.environ.get("EVOPOSE_MODELS_DIR")
    if env:
        return Path(env)
    from evopose_sdk.models import MODELS_DIR

    return Path(MODELS_DIR)


@dataclass(frozen=True)
class ResolvedModel:
    """A model file and the card that describes it."""

    path: Path
    card: ModelCard


def _format_of(path: Path) -> str:
    return "tflite" if path.suffix.lower() == ".tflite" else "onnx"


def available_models(search_dir: str | os.PathLike | None = None) -> list[ResolvedModel]:
    """Every model file with a readable card in ``search_dir`` (default: :func:`models_dir`)."""
    folder = Path(search_dir) if search_dir is not None else models_dir()
    found = []
    if not folder.is_dir():
        return found
    for card_file in sorted(folder.glob(f"*{CARD_SUFFIX}")):
        model_file = card_file.with_name(card_file.name[: -len(CARD_SUFFIX)])
        if model_file.suffix.lower() not in MODEL_SUFFIXES or not model_file.is_file():
            continue
        try:
            found.append(ResolvedModel(model_file, ModelCard.load(card_file)))
        except CardError as exc:
            logger.warning("skipping shipped model %s: %s", model_file.name, exc)
    return found


def read_embedded_card(path: str | os.PathLike) -> ModelCard | None:
    """The card embedded in an ONNX file's metadata, or None if it has none."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"cannot load ONNX model {path}: {exc}") from None
    meta = sess.get_modelmeta().custom_metadata_map
    if ONNX_METADATA_KEY not in meta:
        return None
    try:
        return ModelCard.from_dict(json.loads(meta[ONNX_METADATA_KEY]))
    except (json.JSONDecodeError, CardError) as exc:
        raise ModelError(f"the card embedded in {path} is malformed: {exc}") from None


def _load_for_path(path: Path, verify: bool) -> ResolvedModel:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"model file must end in .onnx or .tflite; received {path}")
    card_file = card_path_for(path)
    if card_file.is_file():
        try:
            card = ModelCard.load(card_file)
            if verify:
                verify_sha256(card, path)
        except CardError as exc:
            raise ModelError(str(exc)) from None
    elif _format_of(path) == "onnx":
        card = read_embedded_card(path)
        if card is None:
            raise ModelError(f"no card for {path}: expected {card_file.name} next to it or an "
                             f"'{ONNX_METADATA_KEY}' entry in the ONNX metadata")
        logger.info("using the card embedded in %s (no sha256 check without %s)",
                    path.name, card_file.name)
    else:
        raise ModelError(f"no card for {path}: expected {card_file} next to it")
    if card.file_format != _format_of(path):
        raise ModelError(f"card/file mismatch for {path}: card says file_format="
                         f"{card.file_format!r} but the file is {_format_of(path)!r}")
    return ResolvedModel(path, card)


def resolve_model(
    model: str | os.PathLike,
    backend: str | None = None,
    precision: str | None = None,
    search_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> ResolvedModel:
    """Find a model by name or path and check its card against the file.

    Args:
        model: a shipped model name (``"evopose2d-s"``, case-insensitive) or a path to an
            ``.onnx`` / ``.tflite`` file.
        backend: ``"onnxruntime"`` or ``"tflite"``: picks the file format for a name.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` for a name (default: fp32 if shipped).
        search_dir: folder of shipped models (default :func:`models_dir`).
        verify: check the card's sha256 against the file.

    Raises:
        ModelError: not found (lists the available names), card missing or mismatched.
    """
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.suffix.lower() in MODEL_SUFFIXES or path.exists() or os.sep in text:
        return _load_for_path(path, verify)
    fmt = "tflite" if backend == "tflite" else "onnx"
    candidates = available_models(search_dir)
    key = text.lower()
    matches = [m for m in candidates
               if key in (m.card.name.lower(), m.path.stem.lower(), m.path.name.lower())]
    if precision is not None:
        matches = [m for m in matches if m.card.precision == precision]
    if backend is None and precision is not None and matches and not any(
            m.card.file_format == fmt for m in matches):
        fmt = matches[0].card.file_format  # e.g. int8 is shipped as TFLite only
    matches = [m for m in matches if m.card.file_format == fmt]
    if not matches:
        names = sorted({f"{m.card.name} ({m.card.file_format} {m.card.precision})"
                        for m in candidates})
        close = difflib.get_close_matches(key, sorted({m.card.name.lower() for m in candidates}),
                                          n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = search_dir if search_dir is not None else models_dir()
        raise ModelError(
            f"no {fmt} model named {text!r}{' at ' + precision if precision else ''} in {where}."
            f"{hint} Available: {', '.join(names) if names else 'none shipped'}. "
            "Pass a path to an .onnx or .tflite file with its card (<file>.json) instead.")
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    best = sorted(matches, key=lambda m: order.get(m.card.precision, 9))[0]
    return _load_for_path(best.path, verify)
