"""Drawing of pose results: boxes, skeleton limbs (from the card), keypoints and track ids."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

_PALETTE = np.array([
    (255, 128, 0), (255, 153, 51), (255, 178, 102), (230, 230, 0), (255, 153, 255),
    (153, 204, 255), (255, 102, 255), (255, 51, 255), (102, 178, 255), (51, 153, 255),
    (255, 153, 153), (255, 102, 102), (255, 51, 51), (153, 255, 153), (102, 255, 102),
    (51, 255, 51), (0, 255, 0), (0, 0, 255), (255, 0, 0), (255, 255, 255)], dtype=np.int32)


class DrawablePoses(Protocol):
    """What :func:`draw_poses` reads (a :class:`evopose_sdk.result.PoseResult` is one)."""

    boxes_xyxy: np.ndarray  # (n, 4) float, image pixels
    keypoints: np.ndarray  # (n, K, 3) float: x, y, score
    scores: np.ndarray  # (n,) instance scores
    track_ids: np.ndarray  # (n,) int, -1 when untracked
    skeleton: tuple[tuple[int, int], ...]  # limbs as keypoint index pairs

    def __len__(self) -> int: ...


def _color(i: int) -> tuple[int, int, int]:
    c = _PALETTE[i % len(_PALETTE)]
    return int(c[0]), int(c[1]), int(c[2])


def draw_poses(
    image_bgr: np.ndarray,
    result: DrawablePoses,
    keypoint_threshold: float = 0.3,
    draw_boxes: bool = True,
    draw_ids: bool = True,
    radius: int | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """Return a copy of ``image_bgr`` with the people of ``result`` drawn on it.

    Args:
        image_bgr: (H, W, 3) uint8 image the result was computed on.
        result: the poses to draw.
        keypoint_threshold: keypoints with a lower score (and limbs touching them) are skipped.
        draw_boxes: draw person boxes (labelled with the instance score).
        draw_ids: label boxes with track ids when they are >= 0.
        radius, thickness: keypoint radius and line width in pixels; default from image size,
            shrunk for a person whose box is short (about 1/40 and 1/60 of its height), so
            that the dots of a person 80 px tall do not hide the limbs.

    Raises:
        ValueError: if the image is not (H, W, 3) uint8.
    """
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"draw needs an (H, W, 3) uint8 BGR image; received shape {img.shape} "
                         f"dtype {img.dtype}")
    out = img.copy()
    scale = max(img.shape[:2]) / 640.0
    r_image = max(2, int(round(3 * scale)))
    t_image = max(1, int(round(2 * scale)))
    for i in range(len(result)):
        kpts = result.keypoints[i]
        box_h = float(np.nan_to_num(result.boxes_xyxy[i, 3] - result.boxes_xyxy[i, 1]))
        r = radius if radius is not None else max(1, min(r_image, int(round(box_h / 40))))
        t = thickness if thickness is not None else max(1, min(t_image, int(round(box_h / 60))))
        color = _color(int(result.track_ids[i]) if result.track_ids[i] >= 0 else i)
        if draw_boxes:
            x1, y1, x2, y2 = (int(round(float(v))) for v in result.boxes_xyxy[i])
            cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
            label = f"{result.scores[i]:.2f}"
            if draw_ids and result.track_ids[i] >= 0:
                label = f"id {int(result.track_ids[i])} " + label
            cv2.putText(out, label, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * max(scale, 0.6), color, max(1, t // 2), cv2.LINE_AA)
        visible = np.isfinite(kpts[:, :2]).all(axis=1) & (kpts[:, 2] >= keypoint_threshold)
        for j, (a, b) in enumerate(result.skeleton):
            if visible[a] and visible[b]:
                pa = (int(round(float(kpts[a, 0]))), int(round(float(kpts[a, 1]))))
                pb = (int(round(float(kpts[b, 0]))), int(round(float(kpts[b, 1]))))
                cv2.line(out, pa, pb, _color(j), t, cv2.LINE_AA)
        for k in np.flatnonzero(visible):
            p = (int(round(float(kpts[k, 0]))), int(round(float(kpts[k, 1]))))
            cv2.circle(out, p, r, (0, 0, 255), -1, cv2.LINE_AA)
    return out
