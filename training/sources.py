"""COCO keypoint sources: where the data is, reading the JSON, the people it holds.

* A *source* is a COCO keypoint JSON plus its image folder (:class:`SourceSpec`); several
  sources are mixed with per-source weights (a source of weight 2 appears twice per epoch,
  0.5 half of it, a fresh random half each epoch; see :func:`batches.epoch_order`).
* Joints with ``v = 0`` (unlabelled, e.g. the face of LSP-style sources) stay in the records
  and get target weight 0 later; any keypoint set (K != 17) works, with flip pairs from the
  JSON's keypoint names (``left_*`` <-> ``right_*``) or given explicitly
  (:mod:`evopose_sdk.training.keypoint_sets`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk.errors import EvoPoseError
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, flip_permutation
from evopose_sdk.training import config as cfgmod
from evopose_sdk.training.keypoint_sets import KeypointSet, flip_pairs_from_names

log = logging.getLogger(__name__)

#: Sources in /work/shared/data-style folders: ``<root>/<name>/annotations.json`` + ``images/``.
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"


class DataError(EvoPoseError, ValueError):
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
        min_keypoints: this source's least labelled joints a person needs (default: the
            loader's); 0 for people labelled only by the teacher on each view
            (:mod:`evopose_sdk.training.extra_people`).
    """

    annotations: str
    images: str
    weight: float = 1.0
    split: str | None = "train"
    name: str = ""
    min_keypoints: int | None = None

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
            unknown = set(spec) - {"annotations", "images", "weight", "split", "name",
                                   "min_keypoints"}
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
            if int((kp[:, 2] > 0).sum()) < (min_keypoints if spec.min_keypoints is None
                                            else spec.min_keypoints):
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


def read_image_rgb(path: str) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises DataError when unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def train_sources(cfg: Mapping) -> list[SourceSpec]:
    """The training sources of a config (``data.sources`` or every source of ``data.root``)."""
    d = cfg["data"]
    srcs = d.get("sources")
    if srcs is None:
        if not d.get("root"):
            raise cfgmod.ConfigError("set data.root (a folder of sources) or data.sources")
        return sources_in_root(d["root"], d["split"])
    out = []
    for s in srcs:
        if isinstance(s, str) and d.get("root") and not Path(s).is_dir():
            spec = sources_in_root(d["root"], d["split"], [s])[0]
        else:
            spec = SourceSpec.from_any(s)
            if isinstance(s, str):
                spec.split = d["split"]
        out.append(spec)
    return out


def val_sources(cfg: Mapping) -> list[SourceSpec]:
    """Validation sources: ``data.val_sources`` or sources of val_root/root with val_split."""
    d = cfg["data"]
    if d.get("val_sources"):
        specs = []
        for s in d["val_sources"]:
            if isinstance(s, str) and d.get("root") and not Path(s).is_dir():
                specs.append(sources_in_root(d.get("val_root") or d["root"],
                                             d["val_split"], [s])[0])
                continue
            spec = SourceSpec.from_any(s)
            if not (isinstance(s, Mapping) and "split" in s):
                spec.split = d["val_split"]
            specs.append(spec)
        return specs
    root = d.get("val_root") or d.get("root")
    if not root:
        return []
    specs = sources_in_root(root, d["val_split"])
    keep = []
    for s in specs:
        coco = filter_coco_split(read_coco_json(s.annotations), s.split)
        if coco["annotations"]:
            keep.append(s)
    return keep
