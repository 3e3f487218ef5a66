"""Where the network to export comes from: a ``.keras`` checkpoint, a legacy ``.h5``, or a
fresh random-weight build of a named size or genotype."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evopose_sdk.export._backend import keras
from evopose_sdk.export.errors import ExportError
from evopose_sdk.export.options import parse_genotype, parse_input_size
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_SKELETON
from evopose_sdk.training import genotype as gt
from evopose_sdk.training import network, quantize
from evopose_sdk.training.keypoint_sets import KeypointSet, keypoints_path_for, read_beside

log = logging.getLogger(__name__)

_H5_NAME_RE = re.compile(r"evopose2d[_-](XS|S|M|L)(?:[_-]f32)?$", re.IGNORECASE)


@dataclass
class PoseSource:
    """A loaded pose network plus what the card needs to know about it.

    Attributes:
        model: Keras model, ``image`` (N, H, W, 3) float32 RGB 0-255 -> heatmaps (N, H/s, W/s, K).
        name: model name for the card, e.g. ``"evopose2d-s"``.
        input_hw: (H, W) input size in pixels.
        heatmap_stride: s, input pixels per heatmap cell.
        num_keypoints: K.
        keypoints: the K keypoint names, flip pairs and skeleton (for the card).
        genotype: 7 x [kernel, repeats, filters/8, stride], or None when it cannot be told.
        trained: False for a random-weight build.
        origin: human-readable description of where the weights came from.
    """

    model: keras.Model
    name: str
    input_hw: tuple[int, int]
    heatmap_stride: int
    num_keypoints: int
    keypoints: KeypointSet
    genotype: list[list[int]] | None
    trained: bool
    origin: str

    @property
    def file_stem(self) -> str:
        """Default file stem for exported files (``evopose2d-s`` -> ``evopose2d_s``)."""
        return re.sub(r"[^A-Za-z0-9_.]+", "_", self.name).strip("_") or "model"


def check_pose_model(model: keras.Model, where: str, num_keypoints: int | None = 17) -> tuple[
        tuple[int, int], int, int]:
    """Check that ``model`` follows the pose-model contract (with ``num_keypoints`` heatmaps;
    None: any number).

    Returns:
        ``(input_hw, heatmap_stride, num_keypoints)``.

    Raises:
        ExportError: naming the shape that breaks the contract.
    """
    ins, outs = list(model.inputs), list(model.outputs)
    if len(ins) != 1 or len(outs) != 1:
        raise ExportError(
            f"{where} is not a pose model: expected one input and one output, found "
            f"{len(ins)} input(s) and {len(outs)} output(s)")
    ishape, oshape = tuple(ins[0].shape), tuple(outs[0].shape)
    if len(ishape) != 4 or ishape[3] != 3 or ishape[1] is None or ishape[2] is None:
        raise ExportError(
            f"{where} is not a pose model: input must be (N, H, W, 3) with fixed H, W; "
            f"found {ishape}")
    if len(oshape) != 4 or None in oshape[1:]:
        raise ExportError(
            f"{where} is not a pose model: output must be NHWC heatmaps (N, H/s, W/s, K); "
            f"found {oshape}")
    h, w = int(ishape[1]), int(ishape[2])
    hh, hw, k = int(oshape[1]), int(oshape[2]), int(oshape[3])
    if h % hh or w % hw or h // hh != w // hw:
        raise ExportError(
            f"{where} is not a pose model: heatmaps {hh}x{hw} are not the input {h}x{w} "
            "divided by one integer stride")
    if num_keypoints is not None and k != num_keypoints:
        raise ExportError(
            f"{where} does not fit its keypoint set: its output has {k} channels, expected "
            f"{num_keypoints} heatmaps")
    return (h, w), h // hh, k


def default_keypoints(num_keypoints: int) -> KeypointSet:
    """COCO-17 for 17 channels; otherwise ``keypoint_0..`` with no flip pairs or skeleton."""
    if num_keypoints == len(COCO_KEYPOINT_NAMES):
        return KeypointSet(COCO_KEYPOINT_NAMES, COCO_FLIP_PAIRS, COCO_SKELETON)
    return KeypointSet(tuple(f"keypoint_{i}" for i in range(num_keypoints)), ())


def _keypoints_beside(path: Path, k: int) -> KeypointSet:
    """The keypoint set training wrote beside ``path``; COCO-17 for a 17-channel model that
    has none (checkpoints from before the sidecar, foreign files). Any other K needs one."""
    try:
        kset = read_beside(path)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if kset is not None:
        return kset
    if k != len(COCO_KEYPOINT_NAMES):
        raise ExportError(
            f"{path} has {k} output channels and no keypoint set beside it "
            f"({keypoints_path_for(path).name}); training writes one beside every checkpoint: "
            "copy it from the run folder, or write its keypoint_names, flip_pairs and skeleton")
    log.warning("%s has no %s; the card assumes COCO-17 keypoints (names, flip pairs, "
                "skeleton)", path.name, keypoints_path_for(path).name)
    return default_keypoints(k)


def _observed_blocks(model: keras.Model) -> list[tuple[int, int, int, int]] | None:
    """(kernel, repeats, filters, stride) per stage as built, read from the layer names."""
    names = {layer.name: layer for layer in model.layers}
    blocks = []
    for i in range(1, gt.NUM_BLOCKS + 1):
        first = names.get(f"block{i}a_dwconv")
        if first is None:
            return None
        reps = 0
        while f"block{i}{chr(97 + reps)}_project_conv" in names:
            reps += 1
        proj = names.get(f"block{i}a_project_conv")
        if reps == 0 or proj is None:
            return None
        blocks.append((int(first.kernel_size[0]), reps, int(proj.filters), int(first.strides[0])))
    return blocks


def _as_built(genotype: Sequence[Sequence[int]], input_hw: tuple[int, int] | None):
    """Stages as the builder makes them at ``input_hw`` (None: no compound scaling)."""
    d, w = (1.0, 1.0) if input_hw is None else gt.scaling_parameters(input_hw)[:2]
    return [(int(k), gt.round_repeats(int(r), d), gt.round_filters(int(f) * 8, w), int(s))
            for k, r, f, s in genotype]


def infer_genotype(model: keras.Model, input_hw: tuple[int, int]) -> list[list[int]] | None:
    """Recover the genotype of an EvoPose2D Keras model from its layers, or None.

    Published genotypes are matched first, built with compound scaling at ``input_hw`` or
    without it (``compound_scaling=False``, e.g. S at 160x128); otherwise the as-built stages
    are read directly, which is exact when the scaling factors are 1 (no compound scaling, or
    inputs around 224 px, e.g. 256x192).
    """
    observed = _observed_blocks(model)
    if observed is None:
        return None
    for spec in network.MODEL_SPECS.values():
        if any(_as_built(spec.genotype, hw) == observed for hw in (input_hw, None)):
            return [list(b) for b in spec.genotype]
    if all(f % 8 == 0 for _, _, f, _ in observed):
        candidate = [[k, r, f // 8, s] for k, r, f, s in observed]
        try:
            candidate = gt.validate(candidate)
        except ValueError:
            return None
        if any(_as_built(candidate, hw) == observed for hw in (input_hw, None)):
            return candidate
    return None


def _name_from_model(model: keras.Model, input_hw: tuple[int, int], fallback: str) -> str:
    """``evopose2d_s`` -> ``evopose2d-s``; a non-standard input size is appended (``-128x96``)."""
    for spec in network.MODEL_SPECS.values():
        if model.name == spec.name.replace("-", "_"):
            if tuple(input_hw) == tuple(spec.input_hw):
                return spec.name
            return f"{spec.name}-{input_hw[0]}x{input_hw[1]}"
    return fallback


def load_source(
    path: str | Path | None = None,
    *,
    size: str | None = None,
    genotype: str | Sequence[Sequence[int]] | None = None,
    input_hw: str | Sequence[int] | None = None,
    name: str | None = None,
    trained: bool | None = None,
    num_keypoints: int = len(COCO_KEYPOINT_NAMES),
) -> PoseSource:
    """Load or build the network to export.

    Args:
        path: ``.keras`` checkpoint or legacy ``.h5`` (authors' ``evopose2d_{XS,S,M,L}_f32.h5``);
            None builds a fresh random-weight network from ``size`` / ``genotype``.
        size: ``"XS" | "S" | "M" | "L"``; for ``.h5`` inferred from the file name if not given.
        genotype: 7 x [kernel, repeats, filters/8, stride] or its ``"k3r1f2s1_..."`` string.
        input_hw: input (H, W) or ``"256x192"`` for genotype builds (default: the size's or
            256x192).
        name: card name (default from the size, the model, or the file name).
        trained: card ``trained`` flag; default True for checkpoints, False for fresh builds.

    Raises:
        ExportError: missing/unreadable file, not a pose model, or inconsistent options.
    """
    geno = parse_genotype(genotype)
    hw = parse_input_size(input_hw)
    if path is None:
        if size is None and geno is None:
            raise ExportError("give a checkpoint path, or --size / --genotype for a fresh build")
        spec = network.get_spec(size) if size is not None else None
        if geno is None:
            geno = [list(b) for b in spec.genotype]
        hw = hw or (spec.input_hw if spec else (256, 192))
        try:
            model = network.build_evopose(geno, hw, num_keypoints,
                                          name=(name or (spec.name if spec else "evopose2d"))
                                          .replace("-", "_"))
        except ValueError as exc:
            raise ExportError(f"cannot build the network: {exc}") from None
        default_name = spec.name if spec and hw == spec.input_hw else (
            f"{spec.name}-{hw[0]}x{hw[1]}" if spec else f"evopose2d-custom-{hw[0]}x{hw[1]}")
        io_hw, stride, k = check_pose_model(model, "the built network", num_keypoints)
        return PoseSource(model, name or default_name, io_hw, stride, k, default_keypoints(k), geno,
                          bool(trained) if trained is not None else False,
                          f"random weights (built from genotype {gt.encode(geno)})")

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"checkpoint not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".keras":
        try:
            model = keras.saving.load_model(p, compile=False)
        except Exception as exc:  # noqa: BLE001 - Keras raises many types for bad files
            raise ExportError(f"cannot load Keras model {p}: {type(exc).__name__}: {exc}") from None
        if not isinstance(model, keras.Model):
            raise ExportError(f"{p} does not hold a Keras model")
        if quantize.has_fake_quant(model):  # a quantisation-aware checkpoint: plain network
            model = quantize.strip_fake_quant(model)
        io_hw, stride, k = check_pose_model(model, str(p), None)
        kset = _keypoints_beside(p, k)
        if kset.num_keypoints != k:
            raise ExportError(f"{p} has {k} heatmap channels but its keypoint set "
                              f"{keypoints_path_for(p).name} names {kset.num_keypoints}")
        if geno is None:
            geno = infer_genotype(model, io_hw)
            if geno is None:
                log.warning("could not infer the genotype of %s; the card will have none "
                            "(pass --genotype)", p)
        return PoseSource(model, name or _name_from_model(model, io_hw, p.stem), io_hw, stride, k,
                          kset, geno,
                          True if trained is None else bool(trained), f"keras checkpoint {p.name}")
    if suffix == ".h5":
        if size is None and geno is None:
            m = _H5_NAME_RE.search(p.stem)
            if not m:
                raise ExportError(
                    f"cannot tell the model size of {p.name}: pass --size XS|S|M|L or "
                    "--genotype (the authors' files are named evopose2d_{XS,S,M,L}_f32.h5)")
            size = m.group(1).upper()
        src = load_source(None, size=size, genotype=geno, input_hw=hw, name=name,
                          trained=True if trained is None else trained,
                          num_keypoints=num_keypoints)
        try:
            from evopose_sdk.training.legacy_h5 import load_h5_weights
        except ImportError as exc:
            raise ExportError(
                "loading .h5 checkpoints needs evopose_sdk.training.legacy_h5.load_h5_weights, "
                f"which is not available: {exc}") from None
        try:
            load_h5_weights(src.model, p)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"cannot load weights from {p}: {type(exc).__name__}: {exc}") from None
        src.origin = f"legacy h5 checkpoint {p.name}"
        return src
    raise ExportError(f"unsupported checkpoint type {p.name!r}: expected .keras or .h5")
