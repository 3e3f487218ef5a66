"""COCO keypoint AP of a Keras model (no export needed), with GT boxes or a detection file.

People are posed by the runtime's own top-down pipeline,
:class:`evopose_sdk.topdown.TopDownPipeline` (crops, flip test, :class:`~evopose_sdk.codec.
HeatmapCodec` decoding, inverse affine, instance score), with the Keras model as its ``run``.
Scoring follows pycocotools ``COCOeval(iouType="keypoints")``: ground-truth
people with no labelled keypoints are ignored by COCOeval itself, ``area`` scales OKS (the
data's ``bbox_x0.53`` areas are approximations, see the data README), people with few
keypoints count like any other.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.atomic import atomic_write_text
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.skeleton import COCO_FLIP_PAIRS, default_sigmas
from evopose_sdk.topdown import TopDownPipeline, keras_run
from evopose_sdk.training import sources as srcmod

log = logging.getLogger(__name__)

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


@dataclass
class EvalResult:
    """COCO keypoint metrics (``stats`` by name, -1 where undefined) and the predictions."""

    stats: dict[str, float]
    results: list[dict] = field(default_factory=list)
    num_images: int = 0
    num_people: int = 0
    results_path: Path | None = None
    #: stats of subsets of the people, e.g. ``{"<10": {...}, ">=10": {...}}``
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        return " ".join(f"{k}={v:.4f}" for k, v in self.stats.items())


def merged_ground_truth(sources: Sequence, max_images: int | None = None,
                        image_ids: Sequence[int] | None = None,
                        ) -> tuple[dict, dict[int, str]]:
    """One COCO dict from several sources (ids are unique across the data's files).

    Returns the dict and ``{image_id: absolute image path}``.
    """
    images, anns, cats, paths = [], [], None, {}
    for s in sources:
        spec = srcmod.SourceSpec.from_any(s)
        coco = srcmod.filter_coco_split(srcmod.read_coco_json(spec.annotations), spec.split)
        cats = cats or coco["categories"]
        for im in coco["images"]:
            paths[im["id"]] = str(Path(spec.images) / im["file_name"])
        images.extend(coco["images"])
        anns.extend(coco["annotations"])
    if image_ids is not None:
        wanted = {int(i) for i in image_ids}
        images = [im for im in images if im["id"] in wanted]
    if max_images is not None or image_ids is not None:
        keep = {im["id"] for im in images}
        anns = [a for a in anns if a["image_id"] in keep]
    gt = {"images": images, "annotations": anns, "categories": cats or [],
          "info": {}, "licenses": []}
    return gt, paths


def _boxes_by_image(gt: dict, detections) -> dict[int, list[tuple[np.ndarray, float, int]]]:
    """Per image: (box xywh, score, ground-truth annotation id or -1 for detections)."""
    out: dict[int, list] = {im["id"]: [] for im in gt["images"]}
    if detections is None:
        for a in gt["annotations"]:
            if a.get("iscrowd", 0) or a.get("num_keypoints", 1) == 0:
                continue
            out[a["image_id"]].append((np.asarray(a["bbox"], np.float64), 1.0, int(a["id"])))
        return out
    if isinstance(detections, str | os.PathLike):
        with open(detections, encoding="utf-8") as f:
            detections = json.load(f)
    for d in detections:
        if d.get("category_id", 1) != 1 or d["image_id"] not in out:
            continue
        out[d["image_id"]].append((np.asarray(d["bbox"], np.float64), float(d["score"]), -1))
    return out


def model_pipeline(model, *, flip: bool = True, flip_pairs=COCO_FLIP_PAIRS,
                   decode: str = "dark", padding: float = geometry.DEFAULT_PADDING,
                   batch_size: int = 32) -> TopDownPipeline:
    """The runtime's top-down pipeline for a Keras model (codec from its input and output
    shapes); ``batch_size`` crops per model call, flipped crops included."""
    codec = HeatmapCodec.from_shapes(model.input_shape[1:3], model.output_shape[1:3],
                                     decode_method=decode)
    return TopDownPipeline(codec, flip_pairs, flip_test=flip, padding=padding,
                           max_batch=batch_size)


def evaluate_model(
    model,
    sources: Sequence,
    *,
    detections: str | os.PathLike | list | None = None,
    flip: bool = True,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    decode: str = "dark",
    sigmas: Sequence[float] | None = None,
    results_path: str | os.PathLike | None = None,
    max_images: int | None = None,
    image_ids: Sequence[int] | None = None,
    batch_size: int = 32,
    split_visible: int | None = 10,
) -> EvalResult:
    """COCO keypoint AP of ``model`` on the sources' images.

    Args:
        model: a Keras model or a ``.keras`` path.
        sources: SourceSpecs / dicts / folders; their ``split`` selects images (dev_val).
        detections: None for ground-truth boxes, or COCO-format detection results
            (``image_id``, ``bbox`` xywh, ``score``) as a list or a JSON path.
        flip: average with the flipped crop's heatmaps (flip_back: mirror + L/R swap).
        flip_pairs: default: from the keypoint names of the data.
        sigmas: OKS sigmas (K,) (a card's ``oks_sigmas``); None:
            :func:`~evopose_sdk.skeleton.default_sigmas` (COCO's for K = 17).
        results_path: write the COCO results JSON here (atomically).
        max_images, image_ids: evaluate only these images (the first N / these ids).
        split_visible: also score people with fewer / at least this many labelled
            keypoints apart (``EvalResult.groups``); None: skip.

    Returns:
        EvalResult with ``stats`` (AP, AP50, ... ARl) and the results list.
    """

    if isinstance(model, str | os.PathLike):
        from evopose_sdk.training.rundir import load_checkpoint  # noqa: PLC0415

        model = load_checkpoint(model, compile=False)
    state = {}

    def predict(image: np.ndarray, boxes_xyxy: list, kset) -> tuple[np.ndarray, np.ndarray]:
        if "pipe" not in state:
            if kset.num_keypoints != model.output_shape[-1]:
                raise ValueError(f"model predicts {model.output_shape[-1]} keypoints, data "
                                 f"has {kset.num_keypoints}")
            state["pipe"] = model_pipeline(model, flip=flip, flip_pairs=kset.flip_pairs,
                                           decode=decode, batch_size=batch_size)
            state["run"] = keras_run(model)
        poses = state["pipe"](state["run"], image, boxes_xyxy, color="rgb")
        kps = np.concatenate([poses.keypoints_xy, poses.keypoint_scores[..., None]], axis=2)
        return kps, np.asarray(poses.instance_scores, np.float64)

    return evaluate_people(predict, sources, detections=detections, flip_pairs=flip_pairs,
                           sigmas=sigmas, results_path=results_path, max_images=max_images,
                           image_ids=image_ids, split_visible=split_visible)


#: ``predict(image (H, W, 3) uint8 RGB, boxes [[x1, y1, x2, y2], ...], keypoint set)`` ->
#: (keypoints (N, K, 3) x, y pixels and score, instance scores (N,)).
PredictFn = Callable[[np.ndarray, list, Any], tuple[np.ndarray, np.ndarray]]


def evaluate_people(
    predict: PredictFn,
    sources: Sequence,
    *,
    detections: str | os.PathLike | list | None = None,
    flip_pairs: Sequence[Sequence[int]] | None = None,
    sigmas: Sequence[float] | None = None,
    results_path: str | os.PathLike | None = None,
    max_images: int | None = None,
    image_ids: Sequence[int] | None = None,
    split_visible: int | None = 10,
) -> EvalResult:
    """COCO keypoint AP of any top-down ``predict`` function (a Keras model through
    :func:`evaluate_model`, a peer such as MoveNet) on the sources' people; the arguments
    are :func:`evaluate_model`'s."""
    gt, paths = merged_ground_truth(sources, max_images, image_ids)
    cat = next((c for c in gt["categories"] if c.get("keypoints")), None)
    if cat is None:
        raise srcmod.DataError("the ground truth has no keypoint category")
    kset = srcmod.keypoint_set_from_category(cat, flip_pairs)
    boxes = _boxes_by_image(gt, detections)
    results = []
    n_people = 0
    for im in gt["images"]:
        people = boxes[im["id"]]
        if not people:
            continue
        image = srcmod.read_image_rgb(paths[im["id"]])
        boxes_xyxy = [[x, y, x + bw, y + bh] for (x, y, bw, bh), _, _ in people]
        kps_all, inst = predict(image, boxes_xyxy, kset)
        for p, (box, box_score, gt_id) in enumerate(people):
            results.append({"image_id": im["id"], "category_id": cat["id"],
                            "keypoints": [round(float(v), 3) for v in kps_all[p].reshape(-1)],
                            "score": float(inst[p]) * box_score,
                            "bbox": [round(float(v), 2) for v in box],
                            **({"gt_id": gt_id} if gt_id >= 0 else {})})
            n_people += 1
    if results_path is not None:
        atomic_write_text(results_path, json.dumps(results))
    stats = coco_keypoint_stats(gt, results, sigmas)
    groups = {}
    if split_visible:
        few = {a["id"] for a in gt["annotations"] if 0 < a.get("num_keypoints", 0) < split_visible}
        groups[f"<{split_visible}"] = coco_keypoint_stats(gt, results, sigmas, keep=few)
        many = {a["id"] for a in gt["annotations"] if a.get("num_keypoints", 0) >= split_visible}
        groups[f">={split_visible}"] = coco_keypoint_stats(gt, results, sigmas, keep=many)
    return EvalResult(stats, results, len(gt["images"]), n_people,
                      Path(results_path) if results_path else None, groups)


def coco_keypoint_stats(gt: dict, results: list[dict], sigmas: Sequence[float] | None = None,
                        keep: set[int] | None = None) -> dict[str, float]:
    """pycocotools keypoint stats (``STAT_NAMES``; -1 where undefined) of ``results`` on the
    COCO dict ``gt`` with OKS ``sigmas`` (as in :func:`evaluate_model`); with ``keep``
    (annotation ids), only those people are scored: the others are marked ``iscrowd``, which
    COCOeval ignores together with the predictions it matches (its ``ignore`` field is
    overwritten by ``iscrowd`` in ``COCOeval._prepare``), and predictions made from another
    person's ground-truth box (``gt_id``) are dropped, so that a poor prediction for an
    unscored person is not a false positive here."""
    from pycocotools.coco import COCO  # noqa: PLC0415
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    stats = {n: -1.0 for n in STAT_NAMES}
    anns = gt["annotations"]
    if keep is not None:
        anns = [dict(a, iscrowd=int(a.get("iscrowd", 0) or a["id"] not in keep)) for a in anns]
        results = [r for r in results if r.get("gt_id", -1) < 0 or r["gt_id"] in keep]
    if not results or not any(a.get("num_keypoints", 1) > 0 and not a.get("iscrowd")
                              for a in anns):
        return stats
    cat = next(c for c in gt["categories"] if c.get("keypoints"))
    k = len(cat["keypoints"])
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        coco_gt = COCO()
        coco_gt.dataset = dict(gt, annotations=anns)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.imgIds = [im["id"] for im in gt["images"]]
        ev.params.kpt_oks_sigmas = default_sigmas(k) if sigmas is None else \
            np.asarray(sigmas, np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("COCOeval:\n%s", buf.getvalue())
    return {n: float(v) for n, v in zip(STAT_NAMES, ev.stats, strict=True)}
