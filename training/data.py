"""COCO-format keypoint data for top-down training: sources, augmentation and targets.

Backend-agnostic (numpy + OpenCV). The crop geometry is :mod:`evopose_sdk.geometry`'s; this
module only composes it with the augmentation.

* A *source* is a COCO keypoint JSON plus its image folder (``SourceSpec``); several sources
  are mixed with per-source weights (a source of weight 2 appears twice per epoch, 0.5 half
  of it, a fresh random half each epoch).
* Joints with ``v = 0`` (unlabelled, e.g. the face of LSP-style sources) get target weight 0;
  any keypoint set (K != 17) works, with flip pairs from the JSON's keypoint names
  (``left_*`` <-> ``right_*``) or given explicitly.
* Targets are unbiased Gaussians: the centre is the sub-pixel keypoint in heatmap cells,
  ``geometry.crop_to_heatmap(kp_crop, stride)``; sigma is 2 cells at a 64x48 heatmap and
  scales with the heatmap height.
* Every random choice of a sample is drawn from ``np.random.default_rng((seed, epoch, i))``,
  so an epoch's batches do not depend on worker count or on where a run was resumed.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk import geometry
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, flip_permutation
from evopose_sdk.training import augment as augmod

log = logging.getLogger(__name__)

#: Sources in /work/shared/data-style folders: ``<root>/<name>/annotations.json`` + ``images/``.
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"

_UPPER_WORDS = ("nose", "eye", "ear", "shoulder", "elbow", "wrist", "head", "neck", "mouth")


class DataError(ValueError):
    """A data source is missing, malformed or inconsistent with the others."""


@dataclass
class SourceSpec:
    """One COCO keypoint source.

    Attributes:
        annotations: path of the COCO keypoint JSON.
        images: folder that ``images[].file_name`` is relative to.
        weight: sampling weight (copies per epoch; fractional = random subset per epoch).
        split: keep images whose ``images[].split`` equals this (None: all images; images
            without a split field are always kept).
        name: label for logs (default: the JSON's parent folder name).
    """

    annotations: str
    images: str
    weight: float = 1.0
    split: str | None = "train"
    name: str = ""

    @classmethod
    def from_any(cls, spec: SourceSpec | dict | str) -> SourceSpec:
        """Accept a SourceSpec, a dict of its fields, or a source folder path."""
        if isinstance(spec, SourceSpec):
            return spec
        if isinstance(spec, str | os.PathLike):
            root = Path(spec)
            return cls(annotations=str(root / ANNOTATION_FILE), images=str(root / IMAGE_DIR),
                       name=root.name)
        if isinstance(spec, dict):
            unknown = set(spec) - {"annotations", "images", "weight", "split", "name"}
            if unknown:
                raise DataError(f"unknown source fields {sorted(unknown)} in {spec!r}")
            if "annotations" not in spec or "images" not in spec:
                raise DataError(f"a source needs 'annotations' and 'images'; received {spec!r}")
            return cls(**spec)
        raise DataError(f"cannot read a data source from {spec!r}")


def sources_in_root(root: str | os.PathLike, split: str | None = "train",
                    names: Sequence[str] | None = None) -> list[SourceSpec]:
    """All ``<root>/<name>/annotations.json`` sources (sorted), optionally only ``names``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder")
    found = sorted(p.parent.name for p in root.glob(f"*/{ANNOTATION_FILE}"))
    if names is not None:
        missing = sorted(set(names) - set(found))
        if missing:
            raise DataError(f"sources {missing} not found under {root}; found {found}")
        found = [n for n in found if n in set(names)]
    if not found:
        raise DataError(f"no */{ANNOTATION_FILE} under {root}")
    return [SourceSpec(str(root / n / ANNOTATION_FILE), str(root / n / IMAGE_DIR), 1.0, split, n)
            for n in found]


@dataclass(frozen=True)
class KeypointSet:
    """Names (K,), left/right flip pairs and skeleton (0-based index pairs)."""

    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def upper_body(self) -> np.ndarray:
        """Indices of upper-body joints (by name), for the half-body augmentation."""
        return np.array([i for i, n in enumerate(self.names)
                         if any(w in n.lower() for w in _UPPER_WORDS)], dtype=np.int64)


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Pair ``left_x``/``right_x`` (also ``l_x``/``r_x``, any case) names into flip pairs."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for name, i in index.items():
        for lp, rp in (("left_", "right_"), ("left", "right"), ("l_", "r_")):
            if name.startswith(lp):
                j = index.get(rp + name[len(lp):])
                if j is not None:
                    pairs.append((i, j))
                break
    return tuple(sorted(set(pairs)))


def keypoint_set_from_category(category: dict, flip_pairs=None) -> KeypointSet:
    """Build the keypoint set of a COCO ``categories[]`` entry (skeleton there is 1-based)."""
    names = tuple(category.get("keypoints") or ())
    if not names:
        raise DataError("the person category has no 'keypoints' names")
    if flip_pairs is None:
        pairs = (COCO_FLIP_PAIRS if names == COCO_KEYPOINT_NAMES
                 else flip_pairs_from_names(names))
    else:
        pairs = tuple((int(a), int(b)) for a, b in flip_pairs)
    flip_permutation(len(names), pairs)  # validates
    skeleton = tuple((int(a) - 1, int(b) - 1) for a, b in category.get("skeleton") or ())
    return KeypointSet(names, pairs, skeleton)


@dataclass
class PersonRecords:
    """All annotated people of the loaded sources, as flat arrays (n people).

    Attributes:
        image_paths: (n,) absolute image path of each person.
        boxes_xywh: (n, 4) float64 COCO boxes in image pixels.
        keypoints: (n, K, 3) float64 ``x, y, v`` in image pixels (pixel centres).
        image_ids, ann_ids: (n,) int64 COCO ids.
        source: (n,) int64 index into ``sources``.
    """

    image_paths: np.ndarray
    boxes_xywh: np.ndarray
    keypoints: np.ndarray
    image_ids: np.ndarray
    ann_ids: np.ndarray
    source: np.ndarray
    sources: list[SourceSpec] = field(default_factory=list)
    keypoint_set: KeypointSet | None = None

    def __len__(self) -> int:
        return len(self.ann_ids)

    def subset(self, index: np.ndarray) -> PersonRecords:
        """Records at ``index`` (same sources and keypoint set)."""
        return PersonRecords(self.image_paths[index], self.boxes_xywh[index],
                             self.keypoints[index], self.image_ids[index], self.ann_ids[index],
                             self.source[index], self.sources, self.keypoint_set)


def read_coco_json(path: str | os.PathLike) -> dict:
    """Load a COCO keypoint JSON with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read COCO JSON {path}: {exc}") from exc
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DataError(f"{path} is not a COCO keypoint file: no '{key}'")
    return data


def filter_coco_split(data: dict, split: str | None) -> dict:
    """Copy of a COCO dict keeping images (and their annotations) of ``split``."""
    if split is None:
        return data
    images = [im for im in data["images"] if im.get("split", split) == split]
    keep = {im["id"] for im in images}
    out = dict(data)
    out["images"] = images
    out["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    return out


def load_sources(
    sources: Sequence[SourceSpec | dict | str],
    flip_pairs: Sequence[Sequence[int]] | None = None,
    min_keypoints: int = 1,
) -> PersonRecords:
    """Read and concatenate sources; every source must have the same keypoint names.

    People without a box, crowd annotations and people with fewer than ``min_keypoints``
    labelled joints are left out (their labelled joints could not make a target).
    """
    specs = [SourceSpec.from_any(s) for s in sources]
    if not specs:
        raise DataError("no data sources given")
    parts = {k: [] for k in ("paths", "boxes", "kps", "img", "ann", "src")}
    kset: KeypointSet | None = None
    for si, spec in enumerate(specs):
        if not spec.name:
            spec.name = Path(spec.annotations).parent.name
        if spec.weight < 0:
            raise DataError(f"source {spec.name}: weight must be >= 0; received {spec.weight}")
        data = filter_coco_split(read_coco_json(spec.annotations), spec.split)
        cats = [c for c in data["categories"] if c.get("keypoints")]
        if len(cats) != 1:
            raise DataError(f"{spec.annotations}: expected one category with keypoints; "
                            f"found {len(cats)}")
        this = keypoint_set_from_category(cats[0], flip_pairs)
        if kset is None:
            kset = this
        elif this.names != kset.names:
            raise DataError(f"source {spec.name} has keypoints {this.names}, but the first "
                            f"source has {kset.names}; all sources must share one set")
        k = this.num_keypoints
        images = {im["id"]: im for im in data["images"]}
        img_dir = Path(spec.images)
        if not img_dir.is_dir():
            raise DataError(f"image folder {img_dir} of source {spec.name} does not exist")
        n0 = len(parts["ann"])
        for a in data["annotations"]:
            if a.get("iscrowd", 0) or a["image_id"] not in images or "bbox" not in a:
                continue
            kp = np.asarray(a.get("keypoints", []), np.float64)
            if kp.size != 3 * k:
                raise DataError(f"{spec.annotations}: annotation {a.get('id')} has {kp.size} "
                                f"keypoint numbers; expected {3 * k}")
            kp = kp.reshape(k, 3)
            if int((kp[:, 2] > 0).sum()) < min_keypoints:
                continue
            box = np.asarray(a["bbox"], np.float64)
            if box.shape != (4,) or box[2] <= 1 or box[3] <= 1:
                continue
            parts["paths"].append(str(img_dir / images[a["image_id"]]["file_name"]))
            parts["boxes"].append(box)
            parts["kps"].append(kp)
            parts["img"].append(a["image_id"])
            parts["ann"].append(a.get("id", -1))
            parts["src"].append(si)
        log.info("source %s (%s): %d people", spec.name, spec.split, len(parts["ann"]) - n0)
    if not parts["ann"]:
        raise DataError("the sources hold no usable annotated people")
    return PersonRecords(
        np.array(parts["paths"], dtype=object), np.stack(parts["boxes"]), np.stack(parts["kps"]),
        np.array(parts["img"], np.int64), np.array(parts["ann"], np.int64),
        np.array(parts["src"], np.int64), specs, kset)


# ----------------------------------------------------------------------------- targets


def default_sigma(heatmap_hw: tuple[int, int]) -> float:
    """Gaussian sigma in heatmap cells: 2 at a 64x48 heatmap, proportional to its height."""
    return 2.0 * heatmap_hw[0] / 64.0


def encode_heatmaps(
    keypoints_crop: np.ndarray,
    valid: np.ndarray,
    heatmap_hw: tuple[int, int],
    stride: float,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased Gaussian target heatmaps.

    Args:
        keypoints_crop: (K, 2) keypoints in crop pixels (pixel-centre convention).
        valid: (K,) bool, joints that are labelled.
        heatmap_hw: (Hh, Wh) heatmap size in cells.
        stride: crop pixels per heatmap cell.
        sigma: Gaussian sigma in cells (default :func:`default_sigma`).

    Returns:
        ``heatmaps`` (Hh, Wh, K) float32 with peak 1 at the exact sub-pixel centre
        ``geometry.crop_to_heatmap(kp, stride)``, and ``weights`` (K,) float32: 1 for a
        labelled joint whose centre lies inside the heatmap, else 0 (its map is all zeros).
    """
    hh, ww = int(heatmap_hw[0]), int(heatmap_hw[1])
    sigma = default_sigma((hh, ww)) if sigma is None else float(sigma)
    kp = np.asarray(keypoints_crop, np.float64).reshape(-1, 2)
    k = kp.shape[0]
    mu = geometry.crop_to_heatmap(kp, stride)
    inside = ((mu[:, 0] >= -0.5) & (mu[:, 0] <= ww - 0.5) & (mu[:, 1] >= -0.5)
              & (mu[:, 1] <= hh - 0.5) & np.all(np.isfinite(mu), axis=1))
    weights = (np.asarray(valid, bool).reshape(k) & inside).astype(np.float32)
    xs = np.arange(ww, dtype=np.float64)
    ys = np.arange(hh, dtype=np.float64)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    gx = np.exp(-((xs[None, :] - mu[:, :1]) ** 2) / (2 * sigma * sigma))  # (K, Ww)
    gy = np.exp(-((ys[None, :] - mu[:, 1:]) ** 2) / (2 * sigma * sigma))  # (K, Hh)
    hm = gy[:, :, None] * gx[:, None, :] * weights[:, None, None]
    return np.ascontiguousarray(hm.transpose(1, 2, 0), dtype=np.float32), weights


# ----------------------------------------------------------------------------- augmentation


@dataclass
class AugmentConfig:
    """The paper's (HRNet-style) recipe. ``None`` / ``enabled=False`` means no augmentation.

    scale_factor: crop scale drawn from ``1 + U(-f, f)`` (0.3: 0.7x..1.3x).
    rotation: max rotation in degrees, applied with ``rotation_prob``.
    flip_prob: horizontal flip with left/right swap.
    half_body_prob: crop to the upper or lower body when more than ``half_body_min_joints``
        joints are labelled.
    color_jitter: brightness/contrast/saturation factors drawn from ``1 + U(-c, c)``.
    truncate_prob: the frame cuts through the person (:func:`augment.truncate`); exclusive
        with the half-body crop.
    paste_person_prob: another training person pasted in front (:func:`augment.paste_person`).
    occlude_prob: patches of another photo over the crop (:func:`augment.occlude`).
    blur_prob / lowres_prob: blur, or a 2-4x down-up round trip (:func:`augment.degrade`).
    The last five default to 0 (the paper's recipe).
    """

    enabled: bool = True
    scale_factor: float = 0.3
    rotation: float = 40.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    color_jitter: float = 0.2
    truncate_prob: float = 0.0
    paste_person_prob: float = 0.0
    occlude_prob: float = 0.0
    blur_prob: float = 0.0
    lowres_prob: float = 0.0

    @property
    def needs_other(self) -> bool:
        """Whether samples need a second training image (pasted people, occluder texture)."""
        return self.enabled and (self.paste_person_prob > 0 or self.occlude_prob > 0)

    @classmethod
    def from_any(cls, value) -> AugmentConfig:
        if value is None or value is False:
            return cls(enabled=False)
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise DataError(f"unknown augmentation fields {sorted(unknown)}")
            return cls(**value)
        raise DataError(f"cannot read an augmentation config from {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def flip_matrix(width: int) -> np.ndarray:
    """(2, 3) affine of a horizontal mirror of a ``width``-pixel crop (pixel centres)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of ``outer(inner(x))``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


def _half_body_box(kps: np.ndarray, upper: np.ndarray, rng: np.random.Generator):
    k = kps.shape[0]
    vis = kps[:, 2] > 0
    upper_mask = np.zeros(k, bool)
    upper_mask[upper] = True
    up = np.where(vis & upper_mask)[0]
    low = np.where(vis & ~upper_mask)[0]
    chosen = up if (rng.random() < 0.5 and len(up) > 2) else low
    if len(chosen) < 2:
        chosen = up if len(up) >= 2 else chosen
    if len(chosen) < 2:
        return None
    pts = kps[chosen, :2]
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return np.array([x1, y1, x2, y2])


def _color_jitter(crop: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    img = crop.astype(np.float32)
    b, c, s = 1.0 + rng.uniform(-amount, amount, size=3)
    img = img * b
    mean = img.mean()
    img = (img - mean) * c + mean
    gray = img.mean(axis=2, keepdims=True)
    img = (img - gray) * s + gray
    return np.clip(img, 0, 255).astype(np.uint8)


def make_sample(
    image_rgb: np.ndarray,
    box_xywh: np.ndarray,
    keypoints: np.ndarray,
    input_hw: tuple[int, int],
    stride: int,
    *,
    flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS,
    upper_body: np.ndarray | None = None,
    augment: AugmentConfig | None = None,
    rng: np.random.Generator | None = None,
    sigma: float | None = None,
    padding: float = geometry.DEFAULT_PADDING,
    other: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """One top-down training sample.

    Args:
        image_rgb: (H, W, 3) uint8 image.
        box_xywh: (4,) person box in image pixels.
        keypoints: (K, 3) ``x, y, v`` in image pixels.
        input_hw: model input (h, w); stride: heatmap stride.
        augment: augmentation (None: plain crop, as at validation).
        other: (image (H, W, 3) uint8 RGB, box (4,) xywh) of another training person, for
            the pasted-person and occluder augmentations.

    Returns:
        dict with ``image`` (h, w, 3) uint8 RGB crop, ``heatmaps`` (h/s, w/s, K) float32,
        ``weights`` (K,) float32, ``keypoints`` (K, 2) float64 in crop pixels (after a flip,
        already left/right-swapped), ``matrix`` (2, 3) image -> crop affine, ``flipped`` bool.
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    kps = np.asarray(keypoints, np.float64)
    aug = augment if augment is not None and augment.enabled else None
    rng = rng if rng is not None else np.random.default_rng()
    x, y, bw, bh = np.asarray(box_xywh, np.float64)
    box = np.array([x, y, x + bw, y + bh])
    pad = padding
    rot = 0.0
    scale = 1.0
    flip = False
    truncated = False
    if aug is not None and aug.truncate_prob > 0 and rng.random() < aug.truncate_prob:
        cut = augmod.truncate(image_rgb, np.array([x, y, bw, bh]), kps, rng)
        if cut is not None:
            image_rgb, box, kps = cut
            truncated = True
    if aug is not None:
        if (not truncated and upper_body is not None and len(upper_body) and aug.half_body_prob > 0
                and int((kps[:, 2] > 0).sum()) > aug.half_body_min_joints
                and rng.random() < aug.half_body_prob):
            hb = _half_body_box(kps, upper_body, rng)
            if hb is not None:
                box, pad = hb, 1.5
        scale = 1.0 + rng.uniform(-aug.scale_factor, aug.scale_factor)
        if rng.random() < aug.rotation_prob:
            rot = rng.uniform(-aug.rotation, aug.rotation)
        flip = rng.random() < aug.flip_prob
    center, size = geometry.box_to_center_size(box, w / h, pad)
    matrix = geometry.crop_affine(center, size * scale, (h, w), rot)
    if flip:
        matrix = compose_affine(flip_matrix(w), matrix)
    crop = geometry.warp_crop(image_rgb, matrix, (h, w))
    kp_crop = geometry.apply_affine(kps[:, :2], matrix)
    valid = kps[:, 2] > 0
    if flip:
        perm = flip_permutation(kps.shape[0], flip_pairs)
        kp_crop, valid = kp_crop[perm], valid[perm]
    if aug is not None and other is not None:
        if aug.paste_person_prob > 0 and rng.random() < aug.paste_person_prob:
            crop = augmod.paste_person(crop, other[0], other[1], rng)
        if aug.occlude_prob > 0 and rng.random() < aug.occlude_prob:
            crop = augmod.occlude(crop, other[0], rng)
    if aug is not None and aug.color_jitter > 0:
        crop = _color_jitter(crop, aug.color_jitter, rng)
    if aug is not None and (aug.blur_prob > 0 or aug.lowres_prob > 0):
        r = rng.random()
        if r < aug.lowres_prob:
            crop = augmod.degrade(crop, rng, lowres=True)
        elif r < aug.lowres_prob + aug.blur_prob:
            crop = augmod.degrade(crop, rng, lowres=False)
    hm, weights = encode_heatmaps(kp_crop, valid, (h // stride, w // stride), stride, sigma)
    return {"image": crop, "heatmaps": hm, "weights": weights, "keypoints": kp_crop,
            "matrix": matrix, "flipped": flip}


def read_image_rgb(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises DataError when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- batches


def epoch_order(records: PersonRecords, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """Person indices of one epoch, from the source weights; deterministic in (seed, epoch).

    A source of weight ``w`` contributes ``floor(w)`` full copies plus a random
    ``frac(w)`` share of its people.
    """
    rng = np.random.default_rng((int(seed), int(epoch), 7919))
    parts = []
    for si, spec in enumerate(records.sources or [SourceSpec("", "", 1.0)]):
        idx = np.where(records.source == si)[0]
        if not len(idx):
            continue
        whole, frac = divmod(float(spec.weight), 1.0)
        parts.extend([idx] * int(whole))
        n_extra = int(round(frac * len(idx)))
        if n_extra:
            parts.append(rng.choice(idx, n_extra, replace=False) if shuffle else idx[:n_extra])
    order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    if shuffle:
        order = rng.permutation(order)
    return order


def _pyd_base():
    import keras  # noqa: PLC0415  (keep data.py importable without keras for workers' sake)

    return keras.utils.PyDataset


class KeypointBatches:
    """Top-down batches of one epoch as compact arrays (the workers' unit of work).

    ``batch(i)`` returns ``(images uint8 (B, h, w, 3), heatmaps float32 (B, h/s, w/s, K),
    weights float32 (B, K))``; ``len()`` drops a last partial batch when ``drop_last``.
    """

    def __init__(self, records: PersonRecords, input_hw: tuple[int, int], stride: int,
                 batch_size: int, *, augment: AugmentConfig | dict | bool | None = True,
                 seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_last: bool = True,
                 sigma: float | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; received {batch_size}")
        self.records = records
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.stride = int(stride)
        if self.input_hw[0] % self.stride or self.input_hw[1] % self.stride:
            raise ValueError(f"input size {self.input_hw} is not divisible by stride {stride}")
        self.batch_size = int(batch_size)
        self.augment = AugmentConfig.from_any(augment)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sigma = sigma
        kset = records.keypoint_set
        self.flip_pairs = kset.flip_pairs if kset else COCO_FLIP_PAIRS
        self.upper_body = kset.upper_body if kset else None
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Fix the epoch: sample order and augmentation draws follow (seed, epoch)."""
        self.epoch = int(epoch)
        self.order = epoch_order(self.records, self.epoch, self.seed, self.shuffle)

    def __len__(self) -> int:
        n = len(self.order)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def heatmap_hw(self) -> tuple[int, int]:
        return self.input_hw[0] // self.stride, self.input_hw[1] // self.stride

    def sample(self, position: int) -> dict:
        """The sample at ``position`` of this epoch's order."""
        idx = int(self.order[position])
        rng = np.random.default_rng((self.seed, self.epoch, position, 104729))
        r = self.records
        image = read_image_rgb(r.image_paths[idx])
        other = None
        if self.augment.needs_other and len(r) > 1:
            j = int(rng.integers(len(r) - 1))
            j += j >= idx
            other = (read_image_rgb(r.image_paths[j]), r.boxes_xywh[j])
        return make_sample(image, r.boxes_xywh[idx], r.keypoints[idx], self.input_hw,
                           self.stride, flip_pairs=self.flip_pairs, upper_body=self.upper_body,
                           augment=self.augment, rng=rng, sigma=self.sigma, other=other)

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        lo = i * self.batch_size
        hi = min(lo + self.batch_size, len(self.order))
        samples = [self.sample(p) for p in range(lo, hi)]
        return (np.stack([s["image"] for s in samples]),
                np.stack([s["heatmaps"] for s in samples]),
                np.stack([s["weights"] for s in samples]))


def pack_targets(heatmaps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, Hh, Wh, K) heatmaps + (B, K) weights -> (B, Hh, Wh, 2K) float32 ``y_true``.

    The loss (:class:`evopose_sdk.training.train.HeatmapMSE`) splits them again; packing keeps
    the per-joint weights inside ``y`` so any Keras training entry point works.
    """
    b, hh, ww, k = heatmaps.shape
    w = np.broadcast_to(weights[:, None, None, :].astype(np.float32), (b, hh, ww, k))
    return np.concatenate([heatmaps.astype(np.float32), w], axis=-1)


def make_pydataset(batches: KeypointBatches, workers: int = 1, use_multiprocessing: bool = False,
                   max_queue_size: int = 4):
    """Wrap :class:`KeypointBatches` as a ``keras.utils.PyDataset`` for ``model.fit``.

    Yields ``(images float32 (B, h, w, 3) 0-255, y_true (B, Hh, Wh, 2K))``; ``on_epoch_end``
    advances the epoch so the order stays a function of (seed, epoch).
    """
    base = _pyd_base()

    class _KeypointPyDataset(base):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                             max_queue_size=max_queue_size)
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            images, hms, weights = self.batches.batch(i)
            return images.astype(np.float32), pack_targets(hms, weights)

        def on_epoch_end(self):
            self.batches.set_epoch(self.batches.epoch + 1)

    return _KeypointPyDataset()


# --------------------------------------------------------------- prefetching (own loop)

_WORKER_BATCHES: KeypointBatches | None = None


def _init_worker(batches: KeypointBatches) -> None:
    global _WORKER_BATCHES
    _WORKER_BATCHES = batches
    cv2.setNumThreads(1)


def _worker_batch(epoch: int, i: int):
    if _WORKER_BATCHES.epoch != epoch:
        _WORKER_BATCHES.set_epoch(epoch)
    return _WORKER_BATCHES.batch(i)


class BatchLoader:
    """Loads batches ahead of the trainer, in order, with bounded memory.

    ``workers = 0`` loads in the calling thread; otherwise a pool of ``workers`` processes
    (``spawn``: forking a process that already runs TensorFlow/OpenCV threads can deadlock)
    or threads lives as long as the loader. At most ``prefetch`` batches are in flight.
    Use as a context manager.
    """

    def __init__(self, batches: KeypointBatches, workers: int = 0,
                 use_multiprocessing: bool = True, prefetch: int = 4) -> None:
        self.batches = batches
        self.workers = max(int(workers), 0)
        self.use_multiprocessing = use_multiprocessing
        self.prefetch = max(int(prefetch), 1)
        self._pool = None

    def __enter__(self) -> BatchLoader:
        if self.workers > 0:
            if self.use_multiprocessing:
                import multiprocessing as mp  # noqa: PLC0415

                self._pool = mp.get_context("spawn").Pool(
                    self.workers, initializer=_init_worker, initargs=(self.batches,))
            else:
                from multiprocessing.pool import ThreadPool  # noqa: PLC0415

                self._pool = ThreadPool(self.workers)
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def _submit(self, epoch: int, i: int):
        if self.use_multiprocessing:
            return self._pool.apply_async(_worker_batch, (epoch, i))
        return self._pool.apply_async(_thread_batch, (self.batches, epoch, i))

    def iterate(self, epoch: int, start: int = 0, stop: int | None = None):
        """Yield ``(i, images, heatmaps, weights)`` for batches ``start..stop-1`` of ``epoch``."""
        self.batches.set_epoch(epoch)
        n = len(self.batches) if stop is None else min(int(stop), len(self.batches))
        if self._pool is None:
            for i in range(start, n):
                yield (i, *self.batches.batch(i))
            return
        pending = []
        nxt = start
        while nxt < n and len(pending) < self.prefetch:
            pending.append((nxt, self._submit(epoch, nxt)))
            nxt += 1
        while pending:
            i, res = pending.pop(0)
            out = res.get()
            if nxt < n:
                pending.append((nxt, self._submit(epoch, nxt)))
                nxt += 1
            yield (i, *out)


def _thread_batch(batches: KeypointBatches, epoch: int, i: int):
    # threads share one KeypointBatches; its epoch was set by iterate() before submitting
    return batches.batch(i)
