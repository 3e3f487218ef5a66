"""The pose result types: every array's name carries its format and shape.

:class:`PoseResult` holds the people of one image (arrays with a person axis n);
``result[i]`` is one :class:`Person` (the person axis dropped: ``keypoints`` (K, 3)), and a
slice, index array or boolean mask gives a smaller PoseResult (``result[result.scores > .3]``).

Raw values only: keypoint scores are the decoded heatmap peaks with no threshold applied;
threshold when drawing or filtering.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evopose_sdk.draw import draw_poses
from evopose_sdk.errors import EvoPoseError, InputError
from evopose_sdk.skeleton import COCO_KEYPOINT_NAMES, COCO_SKELETON

logger = logging.getLogger(__name__)


def _r(value: Any, digits: int) -> float:
    """A float32 value as the short decimal it stands for (0.687, not 0.6869999766349792)."""
    return round(float(value), digits)


@dataclass(frozen=True)
class Person:
    """One person of a :class:`PoseResult` (``result[i]``, or ``for person in result``).

    Attributes:
        box_xyxy: (4,) float32 box ``x1, y1, x2, y2`` in image pixels.
        box_score: detector score. score: instance score. track_id: -1 = untracked.
        keypoints: (K, 3) float32 ``(x, y, score)``, x, y in image pixels.
        keypoint_names: K names in keypoint order.
    """

    box_xyxy: np.ndarray
    box_score: float
    keypoints: np.ndarray
    score: float
    track_id: int
    keypoint_names: tuple[str, ...] = COCO_KEYPOINT_NAMES

    @property
    def keypoints_xy(self) -> np.ndarray:
        """(K, 2) keypoint coordinates in image pixels."""
        return self.keypoints[:, :2]

    @property
    def keypoint_scores(self) -> np.ndarray:
        """(K,) raw keypoint scores."""
        return self.keypoints[:, 2]

    def keypoint(self, name: str) -> np.ndarray:
        """The (3,) ``(x, y, score)`` of the keypoint called ``name`` (``"left_wrist"``)."""
        try:
            return self.keypoints[self.keypoint_names.index(name)]
        except ValueError:
            raise KeyError(f"no keypoint {name!r}; keypoints: {', '.join(self.keypoint_names)}"
                           ) from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (one entry of ``people`` in the CLI's JSON lines), rounded:
        pixels to 0.01, scores to 1e-5."""
        return {
            "box_xyxy": [_r(v, 2) for v in self.box_xyxy],
            "box_score": _r(self.box_score, 5),
            "score": _r(self.score, 5),
            "track_id": int(self.track_id),
            "keypoints": [[_r(x, 2), _r(y, 2), _r(c, 5)] for x, y, c in self.keypoints],
        }

    def __repr__(self) -> str:
        return (f"Person(score={_r(self.score, 3)}, box_xyxy={[_r(v, 1) for v in self.box_xyxy]}, "
                f"track_id={int(self.track_id)}, keypoints=({len(self.keypoints)}, 3))")


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
        image: the (H, W, 3) uint8 BGR image the result came from, kept by
            :meth:`PoseEstimator.estimate <evopose_sdk.PoseEstimator.estimate>` for
            :meth:`plot`, :meth:`save` and :meth:`show`; None for video frames (a long video's
            results would otherwise hold every frame: pass the frame to :meth:`plot`).
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
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

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

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Person | PoseResult:
        """``result[i]`` (an int): that :class:`Person`, the person axis dropped
        (``result[0].keypoints.shape == (K, 3)``). A slice, boolean mask (n,) or index array:
        a PoseResult of those people."""
        if isinstance(index, int | np.integer):
            n = len(self)
            if not -n <= int(index) < n:
                raise IndexError(f"person index {index} out of range for {n} people")
            i = int(index)
            return Person(self.boxes_xyxy[i], float(self.box_scores[i]), self.keypoints[i],
                          float(self.scores[i]), int(self.track_ids[i]), self.keypoint_names)
        if not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == np.bool_ and index.shape != (len(self),):
                raise IndexError(f"boolean mask shape {index.shape} does not match "
                                 f"({len(self)},) people")
        return dataclasses.replace(
            self, boxes_xyxy=self.boxes_xyxy[index], box_scores=self.box_scores[index],
            keypoints=self.keypoints[index], scores=self.scores[index],
            track_ids=self.track_ids[index], speed_ms=dict(self.speed_ms))

    def __iter__(self) -> Iterator[Person]:
        """The people, one :class:`Person` each, in result order."""
        return (self[i] for i in range(len(self)))  # type: ignore[misc]

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
        ``score`` (instance score), ``bbox`` (x, y, w, h in pixels); rounded like
        :meth:`to_dict`.
        """
        out = []
        for i in range(len(self)):
            x1, y1, x2, y2 = (float(v) for v in self.boxes_xyxy[i])
            out.append({
                "image_id": int(image_id),
                "category_id": int(category_id),
                "keypoints": [_r(v, 3) for v in self.keypoints[i].reshape(-1)],
                "score": _r(self.scores[i], 5),
                "bbox": [_r(x1, 2), _r(y1, 2), _r(x2 - x1, 2), _r(y2 - y1, 2)],
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (one JSON-lines record): image size, timings and a list of people
        (:meth:`Person.to_dict`)."""
        return {
            "image_hw": list(self.image_hw),
            "keypoint_names": list(self.keypoint_names),
            "people": [person.to_dict() for person in self],
            "speed_ms": {k: round(v, 3) for k, v in self.speed_ms.items()},
        }

    def to_json(self, path: str | os.PathLike | None = None, coco: bool = False,
                image_id: int = 0) -> str:
        """:meth:`to_dict` (or :meth:`to_coco` with ``coco=True``) as JSON text; also written
        to ``path`` (whole or not at all, folders created) when given."""
        text = json.dumps(self.to_coco(image_id) if coco else self.to_dict(), allow_nan=False)
        if path is not None:
            from evopose_sdk.atomic import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    def to_supervision(self) -> Any:
        """The people as ``supervision.KeyPoints`` (``pip install 'evopose-sdk[supervision]'``):
        ``xy`` (n, K, 2) float32 pixels, keypoint confidences (n, K) float32, ``class_id`` (n,)
        0 = person, and ``data`` with ``track_id`` (n,), ``score`` (n,), ``box_xyxy`` (n, 4).

        Raises:
            EvoPoseError: supervision is not installed.
        """
        try:
            import supervision as sv
        except ImportError:
            raise EvoPoseError("to_supervision() needs the supervision package: pip install "
                               "'evopose-sdk[supervision]'") from None
        import inspect

        name = "keypoint_confidence" if "keypoint_confidence" in inspect.signature(
            sv.KeyPoints).parameters else "confidence"  # supervision < 0.29: "confidence"
        return sv.KeyPoints(
            xy=np.ascontiguousarray(self.keypoints_xy, np.float32),
            class_id=np.zeros((len(self),), int),
            data={"track_id": self.track_ids.copy(), "score": self.scores.copy(),
                  "box_xyxy": self.boxes_xyxy.copy()},
            **{name: np.ascontiguousarray(self.keypoint_scores, np.float32)})

    def draw(self, image_bgr: np.ndarray, keypoint_threshold: float = 0.3, **kwargs: Any) -> np.ndarray:
        """Draw boxes, skeletons and track ids on a copy of ``image_bgr`` (H, W, 3) uint8.

        Keypoints with score below ``keypoint_threshold`` and limbs touching them are not
        drawn. Further options: see :func:`evopose_sdk.draw.draw_poses`.
        """
        return draw_poses(image_bgr, self, keypoint_threshold=keypoint_threshold, **kwargs)

    def plot(self, image: np.ndarray | None = None, keypoint_threshold: float = 0.3,
             **kwargs: Any) -> np.ndarray:
        """The annotated image, (H, W, 3) uint8 BGR: :meth:`draw` on ``image``, or on the image
        the result came from (kept by ``PoseEstimator.estimate``; a video frame is not kept).

        Raises:
            InputError: no image given and none kept, or one of another size.
        """
        if image is None:
            image = self.image
        if image is None:
            raise InputError("this result keeps no image (a video frame, or a result built by "
                             "hand): pass the frame, result.plot(frame)")
        if tuple(image.shape[:2]) != tuple(self.image_hw):
            raise InputError(f"image of shape {image.shape[:2]} is not the one this result came "
                             f"from ({tuple(self.image_hw)})")
        return self.draw(image, keypoint_threshold, **kwargs)

    def save(self, path: str | os.PathLike, image: np.ndarray | None = None,
             keypoint_threshold: float = 0.3, **kwargs: Any) -> Path:
        """Write the annotated image (:meth:`plot`) to ``path``, encoded by its suffix
        (``.jpg``, ``.png``, ...), or :meth:`to_json` for a ``.json`` path; whole or not at
        all, folders created. Returns the path.

        Raises:
            InputError: no image to draw on, or a suffix OpenCV cannot encode.
        """
        import cv2

        from evopose_sdk.atomic import atomic_write_bytes

        out = Path(path)
        if out.suffix.lower() == ".json":
            self.to_json(out)
            return out
        drawn = self.plot(image, keypoint_threshold, **kwargs)
        try:
            ok, buf = cv2.imencode(out.suffix or ".jpg", drawn)
        except cv2.error:
            ok = False
        if not ok:
            raise InputError(f"cannot save {out}: OpenCV encodes no '{out.suffix}' images; "
                             "use .jpg, .png, .bmp, .webp, or .json for the keypoints")
        atomic_write_bytes(out, buf.tobytes())
        return out

    def show(self, image: np.ndarray | None = None, title: str = "evopose",
             keypoint_threshold: float = 0.3) -> bool:
        """Show the annotated image (:meth:`plot`): inline in a Jupyter notebook, else in an
        OpenCV window when a display and a GUI build of OpenCV exist (closed by a key press).
        Where neither exists (a server, ``opencv-python-headless``) it logs a warning that
        says what to do instead and returns False; True when shown."""
        drawn = self.plot(image, keypoint_threshold)
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            import cv2
            from IPython.display import Image, display

            display(Image(data=cv2.imencode(".png", drawn)[1].tobytes()))
            return True
        if sys.platform in ("win32", "darwin") or os.environ.get("DISPLAY") \
                or os.environ.get("WAYLAND_DISPLAY"):
            import cv2

            try:
                cv2.imshow(title, drawn)
                cv2.waitKey(0)
                cv2.destroyWindow(title)
                return True
            except cv2.error:
                reason = ("this OpenCV build has no GUI (opencv-python-headless); install "
                          "opencv-python, or use a notebook")
        else:
            reason = "no display here (DISPLAY / WAYLAND_DISPLAY not set)"
        logger.warning("show(): %s; save the picture instead, result.save('people.jpg'), or "
                       "take it as an array, result.plot()", reason)
        return False

    def __repr__(self) -> str:
        return (f"PoseResult(n={len(self)}, K={len(self.keypoint_names)}, "
                f"image_hw={self.image_hw}, scores={[_r(v, 3) for v in self.scores]}, "
                f"speed_ms={ {k: round(v, 1) for k, v in self.speed_ms.items()} })")
