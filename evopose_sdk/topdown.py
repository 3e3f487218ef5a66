"""The one top-down pipeline: boxes -> crops -> ``run(crops)`` -> flip back -> decode -> image.

Every stage that poses people on boxes goes through :class:`TopDownPipeline`, whatever runs
the network: :class:`~evopose_sdk.PoseEstimator` passes its ONNX/TFLite backend, training's
evaluation passes the Keras model, export parity passes the exported file's backend. A
``run`` callable takes ``(N, H, W, 3)`` float32 RGB 0-255 crops and returns ``(N, Hh, Wh, K)``
float32 heatmaps (the model-file contract of DESIGN.md).

1. :meth:`TopDownPipeline.preprocess`: one affine crop per box at the model's aspect ratio,
   padded ``padding`` times (:mod:`evopose_sdk.geometry`), as RGB float32;
2. :meth:`TopDownPipeline.heatmaps`: with ``flip_test`` the mirrored crops join the same
   batch; ``run`` is called on chunks of at most ``max_batch`` crops; flipped heatmaps are
   mirrored back with left/right channels swapped (:func:`evopose_sdk.decode.flip_back`,
   exact under the pixel-centre convention) and averaged with the plain ones;
3. :meth:`TopDownPipeline.postprocess`: :meth:`HeatmapCodec.decode` (crop pixels), the
   inverse affine (image pixels) and the instance score: mean of the keypoint scores above
   ``keypoint_score_floor`` (the plain mean if none is) x box score.

Box policy (clipping to the image, detector thresholds, top-k, NMS) is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from evopose_sdk import geometry
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.decode import flip_back

#: ``(N, H, W, 3)`` float32 RGB 0-255 crops -> ``(N, Hh, Wh, K)`` float32 heatmaps.
RunFn = Callable[[np.ndarray], np.ndarray]

#: Keypoints whose score is at or below this do not count towards the instance score.
DEFAULT_KEYPOINT_SCORE_FLOOR = 0.2


def keras_run(model) -> RunFn:
    """A Keras model as a pipeline ``run`` (the one model call of training's evaluation and
    export's parity): (N, H, W, 3) float32 crops -> (N, h, w, K) float32 heatmaps,
    ``predict_on_batch`` (inference mode, one compiled call per batch shape). Keras itself is
    not imported here."""
    return lambda x: np.asarray(model.predict_on_batch(x), np.float32)


def box_affine(box_xyxy: Sequence[float] | np.ndarray, input_hw: tuple[int, int],
               padding: float = geometry.DEFAULT_PADDING, scale: float = 1.0,
               shift_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Image -> crop affine (2, 3) float64 of a person box.

    Args:
        box_xyxy: (4,) box in image pixels (pixel-edge extents).
        input_hw: crop (H, W) in pixels, the model's input.
        padding: factor applied to the box at the model's aspect ratio.
        scale, shift_xy: perturb the crop as a detector's box would vary (export calibration):
            crop size times ``scale``, centre moved by ``shift_xy`` x crop size.
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    center, size = geometry.box_to_center_size(box_xyxy, w / h, padding)
    if scale != 1.0 or shift_xy[0] or shift_xy[1]:
        size = size * float(scale)
        center = center + np.asarray(shift_xy, np.float64) * size
    return geometry.crop_affine(center, size, (h, w))


def warp_crops(image: np.ndarray, matrices: np.ndarray, input_hw: tuple[int, int],
               color: str = "bgr") -> np.ndarray:
    """Crops (n, H, W, 3) float32 RGB 0-255 of an (h, w, 3) uint8 image, one per (2, 3) matrix
    of ``matrices`` (n, 2, 3); ``color`` is the image's channel order, ``"bgr"`` or ``"rgb"``."""
    if color not in ("bgr", "rgb"):
        raise ValueError(f"color must be 'bgr' or 'rgb'; received {color!r}")
    h, w = int(input_hw[0]), int(input_hw[1])
    out = np.zeros((len(matrices), h, w, 3), np.float32)
    for i, m in enumerate(matrices):
        crop = geometry.warp_crop(image, m, (h, w))
        out[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB) if color == "bgr" else crop
    return out


def run_in_chunks(run: RunFn, crops: np.ndarray, max_batch: int | None = None) -> np.ndarray:
    """``run`` on chunks of at most ``max_batch`` crops (None: one call), concatenated:
    (N, H, W, 3) -> (N, Hh, Wh, K) float32."""
    if max_batch is None or len(crops) <= max_batch:
        return np.asarray(run(crops), np.float32)
    return np.concatenate([np.asarray(run(crops[i:i + max_batch]), np.float32)
                           for i in range(0, len(crops), max_batch)], axis=0)


def instance_scores(keypoint_scores: np.ndarray, box_scores: np.ndarray | None = None,
                    floor: float = DEFAULT_KEYPOINT_SCORE_FLOOR) -> np.ndarray:
    """(n,) float32: mean of each person's keypoint scores (n, K) above ``floor`` (the plain
    mean when none is, so weak people still rank among themselves) x ``box_scores`` (n,)."""
    s = np.asarray(keypoint_scores, np.float32)
    strong = s > floor
    mean = np.where(strong.any(axis=1),
                    (s * strong).sum(axis=1) / np.maximum(strong.sum(axis=1), 1),
                    s.mean(axis=1))
    if box_scores is not None:
        mean = mean * np.asarray(box_scores, np.float32).reshape(-1)
    return mean.astype(np.float32)


@dataclass(frozen=True)
class CropBatch:
    """Crops of people and how they were cut.

    Attributes:
        images: (n, H, W, 3) float32 RGB 0-255, the model's input.
        matrices: (n, 2, 3) float64 image -> crop affines.
    """

    images: np.ndarray
    matrices: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class TopDownPoses:
    """People decoded from heatmaps, in image pixels.

    Attributes:
        keypoints_xy: (n, K, 2) float64 (x, y) image pixels.
        keypoint_scores: (n, K) float32 heatmap peak values.
        instance_scores: (n,) float32, see :func:`instance_scores`.
    """

    keypoints_xy: np.ndarray
    keypoint_scores: np.ndarray
    instance_scores: np.ndarray

    @property
    def keypoints(self) -> np.ndarray:
        """(n, K, 3) float32 ``x, y, score``."""
        return np.concatenate([self.keypoints_xy.astype(np.float32),
                               self.keypoint_scores[..., None]], axis=-1)

    def __len__(self) -> int:
        return int(self.keypoints_xy.shape[0])


@dataclass(frozen=True)
class TopDownPipeline:
    """Preprocess and postprocess around any ``run(crops) -> heatmaps`` callable.

    Args:
        codec: the model's :class:`HeatmapCodec` (input size, stride, decoder).
        flip_pairs: (left, right) keypoint index pairs for flip test.
        flip_test: average the heatmaps of each crop and of its mirror image.
        padding: crop = box at the model's aspect ratio times this.
        keypoint_score_floor: see :func:`instance_scores`.
        max_batch: crops per ``run`` call (None: all crops of a call at once).

    Example::

        pipe = TopDownPipeline(HeatmapCodec.from_card(card), card.flip_pairs)
        poses = pipe(backend.run, image_bgr, boxes_xyxy)
    """

    codec: HeatmapCodec
    flip_pairs: Sequence[Sequence[int]] = ()
    flip_test: bool = True
    padding: float = geometry.DEFAULT_PADDING
    keypoint_score_floor: float = DEFAULT_KEYPOINT_SCORE_FLOOR
    max_batch: int | None = None

    def __post_init__(self) -> None:
        if not self.padding > 0:
            raise ValueError(f"padding must be positive; received {self.padding}")
        if self.max_batch is not None and int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1 or None; received {self.max_batch}")
        object.__setattr__(self, "flip_pairs", tuple(tuple(int(v) for v in p)
                                                     for p in self.flip_pairs))

    def preprocess(self, image: np.ndarray, boxes_xyxy: np.ndarray | Sequence,
                   color: str = "bgr") -> CropBatch:
        """Crops of ``boxes_xyxy`` (n, 4) image pixels from an (h, w, 3) uint8 image whose
        channel order is ``color``."""
        hw = self.codec.input_size
        boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        mats = np.zeros((len(boxes), 2, 3), np.float64)
        for i, box in enumerate(boxes):
            mats[i] = box_affine(box, hw, self.padding)
        return CropBatch(warp_crops(image, mats, hw, color), mats)

    def heatmaps(self, run: RunFn, crops: np.ndarray) -> np.ndarray:
        """Heatmaps (n, Hh, Wh, K) float32 of crops (n, H, W, 3), flip test applied."""
        x = np.asarray(crops, np.float32)
        n = len(x)
        if self.flip_test:
            x = np.concatenate([x, x[:, :, ::-1, :]], axis=0)
        hm = run_in_chunks(run, x, self.max_batch)
        if self.flip_test:
            hm = 0.5 * (hm[:n] + flip_back(hm[n:], self.flip_pairs))
        return hm

    def postprocess(self, heatmaps: np.ndarray, matrices: np.ndarray,
                    box_scores: np.ndarray | None = None) -> TopDownPoses:
        """Decode heatmaps (n, Hh, Wh, K) of crops cut with ``matrices`` (n, 2, 3) into image
        keypoints; ``box_scores`` (n,) scale the instance scores (default 1)."""
        crop_xy, kp_scores = self.codec.decode(heatmaps)
        img_xy = np.stack([geometry.apply_affine(crop_xy[i], geometry.invert_affine(m))
                           for i, m in enumerate(matrices)]) if len(matrices) else crop_xy
        kp_scores = kp_scores.astype(np.float32)
        return TopDownPoses(img_xy, kp_scores,
                            instance_scores(kp_scores, box_scores, self.keypoint_score_floor))

    def __call__(self, run: RunFn, image: np.ndarray, boxes_xyxy: np.ndarray | Sequence,
                 box_scores: np.ndarray | None = None, color: str = "bgr") -> TopDownPoses:
        """All three steps: people in ``boxes_xyxy`` (n, 4) of ``image`` (h, w, 3) uint8.
        With no boxes ``run`` is not called and the result has K = 0."""
        crops = self.preprocess(image, boxes_xyxy, color)
        if not len(crops):
            return TopDownPoses(np.zeros((0, 0, 2)), np.zeros((0, 0), np.float32),
                                np.zeros((0,), np.float32))
        return self.postprocess(self.heatmaps(run, crops.images), crops.matrices, box_scores)
