"""Model registry: a model name or path -> (model file, card), sha256 verified.

Names are looked up among the cards shipped in the ``evopose_sdk.models`` package folder
(:data:`MODELS_DIR`): a card ``<file>.json`` whose ``name`` (or file stem) matches. A path to
a model file (an ``.onnx`` / ``.tflite`` file: a suffix of
:data:`~evopose_sdk.backends.MODEL_SUFFIXES`) is read with the card next to it
(``<file>.json``); for a format that embeds it (ONNX) without one, the card in the file's
metadata is used (it carries no sha256).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from evopose_sdk.backends import (
    DEFAULT_BACKEND,
    MODEL_SUFFIXES,
    backend_for_path,
    format_of_backend,
)
from evopose_sdk.card import (
    CARD_SUFFIX,
    ONNX_METADATA_KEY,
    CardError,
    ModelCard,
    card_path_for,
    verify_sha256,
)
from evopose_sdk.errors import ModelError, did_you_mean, or_list
from evopose_sdk.models import MODELS_DIR

logger = logging.getLogger(__name__)

#: ".onnx or .tflite" in messages
_SUFFIXES_TEXT = or_list(MODEL_SUFFIXES, quote=False)

#: The shipped model used when none is named: EvoPose2D-S at the paper's 256x192 input,
#: trained on CPU in four stages, the last quantisation-aware (see its card and the README).
#: ``evopose2d-s-160`` (same genotype at 160x128, about 2.4x fewer FLOPs) is the faster one.
DEFAULT_MODEL = "evopose2d-s"


def models_dir() -> Path:
    """Folder of the shipped models (``evopose_sdk.models``); ``EVOPOSE_MODELS_DIR`` overrides."""
    env = os.environ.get("EVOPOSE_MODELS_DIR")
    if env:
        return Path(env)
    return Path(MODELS_DIR)


#: Precisions a shipped model may come in, most precise first (the order of the default pick).
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ResolvedModel:
    """A model file and the card that describes it."""

    path: Path
    card: ModelCard

    def __repr__(self) -> str:  # the card in full runs to ~10k characters
        return (f"ResolvedModel(name={self.card.name!r}, file={self.path.name!r}, "
                f"format={self.card.file_format!r}, precision={self.card.precision!r})")

    @property
    def label(self) -> str:
        """``"<name> <precision> = <file name>"``: the two ways to ask for this file."""
        return f"{self.card.name} {self.card.precision} = {self.path.name}"


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
    """The card embedded in a model file's metadata (ONNX), or None if it has none."""
    meta = backend_for_path(path).read_metadata(path)
    if ONNX_METADATA_KEY not in meta:
        return None
    try:
        return ModelCard.from_dict(json.loads(meta[ONNX_METADATA_KEY]))
    except (json.JSONDecodeError, CardError) as exc:
        raise ModelError(f"the card embedded in {path} is malformed: {exc}") from None


def _load_for_path(path: Path, verify: bool) -> ResolvedModel:
    if path.is_dir():
        raise ModelError(f"model path is a directory, not a model file: {path} (pass the "
                         f"{_SUFFIXES_TEXT} file inside it, or a shipped model name)")
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelError(f"model file must end in {_SUFFIXES_TEXT}; received {path}")
    runtime = backend_for_path(path)
    card_file = card_path_for(path)
    if card_file.is_file():
        try:
            card = ModelCard.load(card_file)
            if verify:
                verify_sha256(card, path)
        except CardError as exc:
            raise ModelError(str(exc)) from None
    elif runtime.embeds_card:
        card = read_embedded_card(path)
        if card is None:
            raise ModelError(f"no card for {path}: expected {card_file.name} next to it or an "
                             f"'{ONNX_METADATA_KEY}' entry in the {runtime.label} metadata")
        logger.info("using the card embedded in %s (no sha256 check without %s)",
                    path.name, card_file.name)
    else:
        raise ModelError(f"no card for {path}: expected {card_file} next to it")
    if card.file_format != runtime.file_format:
        raise ModelError(f"card/file mismatch for {path}: card says file_format="
                         f"{card.file_format!r} but the file is {runtime.file_format!r}")
    return ResolvedModel(path, card)


def resolve_model(
    model: str | os.PathLike,
    backend: str | None = None,
    precision: str | None = None,
    search_dir: str | os.PathLike | None = None,
    verify: bool = True,
) -> ResolvedModel:
    """Find a model by name or path and check its card against the file.

    A shipped file is reached two ways: by its file name or stem (``"evopose2d-s_int8"``),
    or by its model name plus ``precision`` (``"evopose2d-s"``, ``precision="int8"``). For a
    model name without ``precision`` the most precise file in the wanted format is taken
    (fp32, else fp16, else int8); ONNX unless ``backend="tflite"`` or the precision asked for
    is shipped only as TFLite. When that pick is not fp32 a warning names the file taken.

    Args:
        model: a shipped model name or file stem (case-insensitive), or a path to an
            ``.onnx`` / ``.tflite`` file.
        backend: ``"onnxruntime"`` or ``"tflite"``: picks the file format for a name.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` for a name.
        search_dir: folder of shipped models (default :func:`models_dir`).
        verify: check the card's sha256 against the file.

    Raises:
        ModelError: not found (lists what is available, as name + precision = file), bad
            precision, card missing or mismatched.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}; received "
                         f"{precision!r}")
    text = os.fspath(model)
    path = Path(text).expanduser()
    key = text.lower()
    as_path = path.exists() or os.sep in text or (os.altsep is not None and os.altsep in text)
    candidates = [] if as_path else available_models(search_dir)
    if as_path or (path.suffix.lower() in MODEL_SUFFIXES
                   and not any(m.path.name.lower() == key for m in candidates)):
        return _load_for_path(path, verify)
    fmt = None if backend is None else format_of_backend(backend)
    by_name = [m for m in candidates if m.card.name.lower() == key]
    by_file = [m for m in candidates if key in (m.path.stem.lower(), m.path.name.lower())]
    where = search_dir if search_dir is not None else models_dir()
    if by_file and not by_name:  # a file stem such as evopose2d-s_int8: exactly that file
        found = by_file[0]
        clash = []
        if precision not in (None, found.card.precision):
            clash.append(f"precision {precision!r}")
        if fmt not in (None, found.card.file_format):
            clash.append(f"backend {backend!r}")
        if clash:
            raise ModelError(f"{text!r} is the {found.card.file_format} {found.card.precision} "
                             f"file {found.path.name}, which does not fit {' and '.join(clash)}; "
                             f"drop the option or name the model ({found.card.name!r}) instead")
        return _load_for_path(found.path, verify)
    matches = by_name or by_file
    if precision is not None:
        matches = [m for m in matches if m.card.precision == precision]
    if fmt is None:  # ONNX where it exists, else what is shipped (e.g. int8 is TFLite only)
        default = DEFAULT_BACKEND.file_format
        fmt = default if any(m.card.file_format == default for m in matches) or not matches \
            else matches[0].card.file_format
    matches = [m for m in matches if m.card.file_format == fmt]
    if not matches:
        own = by_name or by_file
        listed = own or candidates
        if own:
            asked = " ".join(x for x in (fmt, precision) if x)
            msg = f"no {asked} file of model {own[0].card.name!r} in {where}."
        else:
            names = sorted({m.card.name for m in candidates} | {m.path.stem for m in candidates})
            hint = f" {h[0].upper()}{h[1:]}" if (
                h := did_you_mean(key, [n.lower() for n in names])) else ""
            msg = f"no model named {text!r} in {where}.{hint}"
        labels = ", ".join(m.label for m in sorted(listed, key=_order)) or "none shipped"
        raise ModelError(
            f"{msg} Available (model name + precision, or the file name): {labels}. "
            f"Pass a path to an {_SUFFIXES_TEXT} file with its card (<file>.json) instead.")
    best = sorted(matches, key=_order)[0]
    if precision is None and best.card.precision != "fp32":
        logger.warning("%s has no fp32 %s file; using %s (%s). Ask for a precision "
                       "(%s) to choose explicitly", best.card.name, fmt, best.path.name,
                       best.card.precision, ", ".join(
                           sorted({m.card.precision for m in matches}, key=PRECISIONS.index)))
    return _load_for_path(best.path, verify)


def _order(m: ResolvedModel) -> tuple:
    rank = PRECISIONS.index(m.card.precision) if m.card.precision in PRECISIONS else 9
    return (m.card.name, rank, m.card.file_format)
