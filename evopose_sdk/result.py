"""The pose result type: every array's name carries its format and shape.

Raw values only: keypoint scores are the decoded heatmap peaks with no threshold applied;
threshold when drawing or filtering (``result[result.scores > 0.3]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evopose_sdk.draw import draw_poses
from evopose_sdk.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON


@dataclass
class PoseResult:
    """People found in one image (n people, K keypoints).

    Attributes:
        boxes_xyxy: (n, 4) float32 person boxes ``x1, y1, x2, y2`` in image pixels.
        box_scores: (n,) float32 detector scores (1.0 for boxes given by the caller).
        keypoints: (n, K, 3) float32 ``(x, y, score)``; x, y in image pixels (pixel
            centres), score = raw heatmap peak.
        scores: (n,) float32 instance scores (see :class:`~evopose_sdk.PoseEstimator`).
        track_ids: (n,) int64 track ids, -1 = untracked.
        image_hw: (height, width) of the image in pixels.
        keypoint_names: K names in keypoint order.
        skeleton: (a, b) keypoint index pairs drawn as limbs.
        speed_ms: milliseconds per stage ("detect", "preprocess", "pose", "postprocess", ...).
    """

    boxes_xyxy: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray | None = None
    image_hw: tuple[int, int] = (0, 0)
    keypoint_names: tuple[str, ...] = COCO_KEYPOINT_NAMES
    skeleton: tuple[tuple[int, int], ...] = COCO_SKELETON
    speed_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keypoint_names = tuple(str(k) for k in self.keypoint_names)
        self.skeleton = tuple((int(a), int(b)) for a, b in self.skeleton)
        k = len(self.keypoint_names)
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float32)
        n = self.boxes_xyxy.shape[0] if self.boxes_xyxy.ndim >= 1 else -1
        if self.boxes_xyxy.ndim == 1 and self.boxes_xyxy.size == 0:
            self.boxes_xyxy = self.boxes_xyxy.reshape(0, 4)
            n = 0
        self.box_scores = np.asarray(self.box_scores, dtype=np.float32).reshape(-1)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if self.keypoints.size == 0 and n == 0:
            self.keypoints = self.keypoints.reshape(0, k, 3)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.track_ids is None:
            self.track_ids = np.full((max(n, 0),), -1, dtype=np.int64)
        self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        expected = {
            "boxes_xyxy": (self.boxes_xyxy.shape, (n, 4)),
            "box_scores": (self.box_scores.shape, (n,)),
            "keypoints": (self.keypoints.shape, (n, k, 3)),
            "scores": (self.scores.shape, (n,)),
            "track_ids": (self.track_ids.shape, (n,)),
        }
        bad = [f"{name} {got} (expected {want})" for name, (got, want) in expected.items()
               if tuple(got) != want]
        if n < 0 or bad:
            raise ValueError(f"PoseResult shapes disagree for n={n} people, K={k} keypoints: "
                             + "; ".join(bad or [f"boxes_xyxy {self.boxes_xyxy.shape}"]))
        hw = tuple(int(v) for v in self.image_hw)
        if len(hw) != 2 or min(hw) < 0:
            raise ValueError(f"image_hw must be (height, width) >= 0; received {self.image_hw}")
        self.image_hw = hw  # type: ignore[assignment]
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"skeleton pair ({a}, {b}) is out of range for K={k}")
        self.speed_ms = {str(s): float(v) for s, v in self.speed_ms.items()}

    @classmethod
    def empty(
        cls,
        image_hw: tuple[int, int],
        keypoint_names: tuple[str, ...] | list[str] = COCO_KEYPOINT_NAMES,
        skeleton: tuple[tuple[int, int], ...] | list = COCO_SKELETON,
        speed_ms: dict[str, float] | None = None,
    ) -> PoseResult:
        """A result with no people."""
        k = len(keypoint_names)
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, k, 3), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int64), image_hw, tuple(keypoint_names),
                   tuple(tuple(p) for p in skeleton), dict(speed_ms or {}))

    def __len__(self) -> int:
        return int(self.boxes_xyxy.shape[0])

    def __getitem__(self, index: int | slice | np.ndarray | list) -> PoseResult:
        """Select people by int, slice, boolean mask (n,) or index array; returns a PoseResult."""
        if isinstance(index, (int, np.integer)):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"person index {index} out of range for {n} people")
            index = [int(index)]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_ and index.shape != (len(self),):
                raise IndexError(f"boolean mask shape {index.shape} does not match "
                                 f"({len(self)},) people")
        return dataclasses.replace(
            self, boxes_xyxy=self.boxes_xyxy[index], box_scores=self.box_scores[index],
            keypoints=self.keypoints[index], scores=self.scores[index],
            track_ids=self.track_ids[index], speed_ms=dict(self.speed_ms))

    @property
    def keypoints_xy(self) -> np.ndarray:
        """(n, K, 2) keypoint coordinates in image pixels."""
        return self.keypoints[..., :2]

    @property
    def keypoint_scores(self) -> np.ndarray:
        """(n, K) raw keypoint scores."""
        return self.keypoints[..., 2]

    def to_coco(self, image_id: int = 0, category_id: int = 1) -> list[dict[str, Any]]:
        """COCO keypoint *results* format: one dict per person.

        Keys: ``image_id``, ``category_id``, ``keypoints`` (flat 3K list x, y, score),
        ``score`` (instance score), ``bbox`` (x, y, w, h).
        """
        out = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes_xyxy[i])
            out.append({
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [round(float(v), 3) for v in self.keypoints[i].reshape(-1)],
                "score": float(self.scores[i]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (one JSON-lines record): image size, timings and a list of people."""
        people = []
        for i in range(len(self)):
            people.append({
                "box_xyxy": [round(float(v), 2) for v in self.boxes_xyxy[i]],
                "box_score": round(float(self.box_scores[i]), 5),
                "score": round(float(self.scores[i]), 5),
                "track_id": int(self.track_ids[i]),
                "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 5)]
                              for x, y, s in self.keypoints[i]],
            })
        return {
            "image_hw": list(self.image_hw),
            "keypoint_names": list(self.keypoint_names),
            "people": people,
            "speed_ms": {k: round(v, 3) for k, v in self.speed_ms.items()},
        }

    def draw(self, image_bgr: np.ndarray, keypoint_threshold: float = 0.3, **kwargs: Any) -> np.ndarray:
        """Draw boxes, skeletons and track ids on a copy of ``image_bgr`` (H, W, 3) uint8.

        Keypoints with score below ``keypoint_threshold`` and limbs touching them are not
        drawn. Further options: see :func:`evopose_sdk.draw.draw_poses`.
        """
        return draw_poses(image_bgr, self, keypoint_threshold=keypoint_threshold, **kwargs)

    def __repr__(self) -> str:
        return (f"PoseResult(n={len(self)}, K={len(self.keypoint_names)}, "
                f"image_hw={self.image_hw}, scores={np.round(self.scores, 3).tolist()}, "
                f"speed_ms={ {k: round(v, 1) for k, v in self.speed_ms.items()} })")
