"""Real person crops for int8 calibration and parity checks.

Crops are built by the runtime's own preprocessing (:func:`evopose_sdk.topdown.box_affine` and
:func:`evopose_sdk.topdown.warp_crops`): a person box -> centre and size at the model's aspect
ratio (padded 1.25x) -> one affine warp. They are returned as float32 RGB 0-255, NHWC, the
model's input contract.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from evopose_sdk import geometry
from evopose_sdk.export.errors import ExportError
from evopose_sdk.topdown import box_affine, warp_crops

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class CropSet:
    """Person crops ready for the model.

    Attributes:
        images: (N, H, W, 3) float32 RGB in 0..255.
        sources: N strings naming the image and box of each crop.
        description: where the crops came from (goes into parity reports).
    """

    images: np.ndarray
    sources: list[str] = field(default_factory=list)
    description: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, index: slice | Sequence[int]) -> CropSet:
        idx = np.arange(len(self))[index]
        return CropSet(self.images[idx], [self.sources[i] for i in idx], self.description)


def _read_bgr(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ExportError(f"cannot read image {path}")
    return image


def crop_person(image_bgr: np.ndarray, box_xyxy: Sequence[float], input_hw: tuple[int, int],
                padding: float = geometry.DEFAULT_PADDING, scale: float = 1.0,
                shift_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """One crop (H, W, 3) float32 RGB 0-255 of ``box_xyxy`` (image pixels, pixel-edge extents).

    ``scale`` and ``shift_xy`` (fractions of the crop size) perturb the crop the way a detector's
    box would vary; both default to none.
    """
    matrix = box_affine(box_xyxy, input_hw, padding, scale, shift_xy)
    return warp_crops(image_bgr, matrix[None], input_hw, "bgr")[0]


#: Deterministic perturbations used to draw more than one crop from a box.
_JITTER = [(1.0, (0.0, 0.0)), (1.15, (0.04, -0.03)), (0.9, (-0.05, 0.03)),
           (1.3, (0.0, 0.05)), (0.95, (0.06, 0.0)), (1.1, (-0.04, -0.05))]


def crops_from_boxes(items: Iterable[tuple[str | Path, Sequence[Sequence[float]]]],
                     input_hw: tuple[int, int], n: int,
                     description: str = "hand-chosen person boxes") -> CropSet:
    """``n`` crops from (image path, [boxes xyxy]) pairs, cycling through jittered boxes."""
    loaded = []
    for path, boxes in items:
        image = _read_bgr(Path(path))
        for box in boxes:
            loaded.append((Path(path).name, image, [float(v) for v in box]))
    if not loaded:
        raise ExportError("no person boxes given for crops")
    crops, sources = [], []
    for i in range(n):
        fname, image, box = loaded[i % len(loaded)]
        scale, shift = _JITTER[(i // len(loaded)) % len(_JITTER)]
        crops.append(crop_person(image, box, input_hw, scale=scale, shift_xy=shift))
        sources.append(f"{fname} box={[round(v, 1) for v in box]} jitter={scale}")
    return CropSet(np.stack(crops), sources, description)


def crops_from_coco(annotation_files: Sequence[str | Path], input_hw: tuple[int, int], n: int,
                    image_dirs: Sequence[str | Path | None] | None = None,
                    min_keypoints: int = 8, min_box_px: float = 48.0) -> CropSet:
    """``n`` crops of annotated people from COCO keypoint JSON files.

    People with at least ``min_keypoints`` labelled keypoints and boxes at least ``min_box_px``
    on both sides are taken at evenly spaced positions of the id-sorted list (deterministic).
    Images are looked up in the matching ``image_dirs`` entry, else ``<json dir>/images``,
    else the JSON's own folder.
    """
    candidates = []
    for i, ann_file in enumerate(annotation_files):
        ann_path = Path(ann_file)
        if not ann_path.is_file():
            raise ExportError(f"calibration annotations not found: {ann_path}")
        try:
            data = json.loads(ann_path.read_text(encoding="utf-8"))
            images = {int(im["id"]): im["file_name"] for im in data["images"]}
            anns = data["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{ann_path} is not a COCO keypoint JSON: {exc}") from None
        given = image_dirs[i] if image_dirs and i < len(image_dirs) else None
        if given is not None:
            root = Path(given)
        elif (ann_path.parent / "images").is_dir():
            root = ann_path.parent / "images"
        else:
            root = ann_path.parent
        for ann in sorted(anns, key=lambda a: int(a.get("id", 0))):
            x, y, bw, bh = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
            if ann.get("iscrowd", 0) or int(ann.get("num_keypoints", 0)) < min_keypoints:
                continue
            if min(bw, bh) < min_box_px or int(ann["image_id"]) not in images:
                continue
            candidates.append((root / images[int(ann["image_id"])], [x, y, x + bw, y + bh]))
    if not candidates:
        raise ExportError(
            f"no usable people (>= {min_keypoints} keypoints, boxes >= {min_box_px:g} px) in "
            f"{', '.join(str(a) for a in annotation_files)}")
    picks = np.linspace(0, len(candidates) - 1, num=min(n, len(candidates))).round().astype(int)
    crops, sources, cache = [], [], {}
    for j in picks:
        path, box = candidates[j]
        if path not in cache:
            cache = {path: _read_bgr(path)}  # consecutive picks often share an image
        crops.append(crop_person(cache[path], box, input_hw))
        sources.append(f"{path.name} box={[round(v, 1) for v in box]}")
    out = CropSet(np.stack(crops), sources,
                  "COCO keypoint boxes from " + ", ".join(Path(a).as_posix() for a in annotation_files))
    if len(out) < n:  # few people: add jittered crops of the same boxes
        extra = crops_from_boxes([(candidates[j][0], [candidates[j][1]]) for j in picks],
                                 input_hw, n)
        out = CropSet(np.concatenate([out.images, extra.images[len(out):]]),
                      out.sources + extra.sources[len(out):], out.description)
    return out


def crops_from_image_dir(directory: str | Path, input_hw: tuple[int, int], n: int) -> CropSet:
    """``n`` crops from a folder of images without boxes: whole image, then centre crops.

    Meant for folders of person photos (e.g. already-cropped people); each image gives the
    whole-image box and, when more are needed, a centre box of 70 % and 50 % of the image.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ExportError(f"calibration image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ExportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    crops, sources = [], []
    fractions = (1.0, 0.7, 0.5)
    for i in range(n):
        path = files[i % len(files)]
        frac = fractions[(i // len(files)) % len(fractions)]
        image = _read_bgr(path)
        ih, iw = image.shape[:2]
        bw, bh = iw * frac, ih * frac
        box = [(iw - bw) / 2, (ih - bh) / 2, (iw + bw) / 2, (ih + bh) / 2]
        crops.append(crop_person(image, box, input_hw, padding=1.0))
        sources.append(f"{path.name} centre={frac}")
    return CropSet(np.stack(crops), sources, f"whole-image/centre crops of {folder.as_posix()}")


def synthetic_crops(input_hw: tuple[int, int], n: int, seed: int = 0) -> CropSet:
    """Smooth random images (N, H, W, 3) float32 0-255: only for parity when no real data is
    given. Not for int8 calibration."""
    rng = np.random.default_rng(seed)
    h, w = input_hw
    small = rng.uniform(0, 255, size=(n, max(h // 16, 2), max(w // 16, 2), 3)).astype(np.float32)
    images = np.stack([cv2.resize(s, (w, h), interpolation=cv2.INTER_CUBIC) for s in small])
    images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.float32)
    return CropSet(images, [f"synthetic #{i}" for i in range(n)],
                   "synthetic smooth noise (no --calib-data / --calib-images given)")
