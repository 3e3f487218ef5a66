"""Top-down pose estimation: detector -> crops (one batch per image) -> heatmaps -> people.

Pipeline of :meth:`PoseEstimator.estimate`:

1. load/convert the image to HxWx3 uint8 BGR (:mod:`evopose_sdk.io`);
2. person boxes from the detector (or the caller), clipped to the image, top ``max_people``;
3. crops, heatmaps and decoding by the one top-down pipeline,
   :class:`evopose_sdk.topdown.TopDownPipeline`, with the backend as its ``run``: one affine
   crop per box padded ``box_padding`` times, all crops of the image in ONE batch (mirrored
   crops appended with ``flip_test``), flip back, :class:`evopose_sdk.codec.HeatmapCodec`
   decoding (``"dark"``, ``"quarter"`` or ``"argmax"``), inverse affine to image pixels;
4. instance score = mean of the keypoint scores above ``keypoint_score_floor`` (the plain
   mean if none is) x detector box score; OKS-NMS (the card's ``oks_sigmas``) drops duplicate
   people; people sorted by instance score.

The options, their checks and the default precision of a shipped model live in
:mod:`evopose_sdk.options`; frames of a video go through :mod:`evopose_sdk.video`.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evopose_sdk import video
from evopose_sdk.backends import (
    BACKENDS,
    DEVICE_BACKEND,
    backend_for_format,
    make_backend,
    parse_device,
)
from evopose_sdk.card import ModelCard
from evopose_sdk.codec import HeatmapCodec
from evopose_sdk.detectors import Detector, detect_with_flip, make_detector, validate_boxes
from evopose_sdk.errors import InputError, ModelError
from evopose_sdk.io import load_image
from evopose_sdk.nms import oks_nms
from evopose_sdk.options import PoseEstimatorOptions, _check_option_names, default_precision
from evopose_sdk.presets import Preset, get_preset
from evopose_sdk.registry import resolve_model
from evopose_sdk.result import PoseResult
from evopose_sdk.topdown import TopDownPipeline

logger = logging.getLogger(__name__)

#: One image as :meth:`PoseEstimator.estimate` takes it: an array or a path.
ImageInput = np.ndarray | str | os.PathLike


class PoseEstimator:
    """Image -> people with boxes, scores and K keypoints ``(x, y, score)`` in image pixels.

    Example::

        with PoseEstimator("evopose2d-s") as est:
            people = est("photo.jpg")
            cv2.imwrite("out.jpg", people.draw(cv2.imread("photo.jpg")))

        with PoseEstimator(preset="fast") as est:     # S-128 int8, detector every 5th frame
            for frame, people in est.stream("walk.mp4"):
                ...

    Args:
        model: see :class:`PoseEstimatorOptions` (all its fields are keyword arguments here).
        preset: ``"default"``, ``"fast"`` or ``"accurate"``
            (:data:`~evopose_sdk.presets.PRESETS`): the options it sets, under any given here.
        options: a complete :class:`PoseEstimatorOptions` instead of a preset and keyword
            arguments.

    Raises:
        ValueError: an unknown preset or a bad option value. TypeError: an unknown option.
        ModelError: the model cannot be found, its card does not match, or it is not a pose
            model. DetectorError: the detector cannot be built.
    """

    def __init__(self, model: str | os.PathLike | None = None, *,
                 preset: str | Preset | None = None,
                 options: PoseEstimatorOptions | None = None, **kwargs: Any) -> None:
        if options is not None and (kwargs or model is not None or preset is not None):
            raise TypeError("pass either options=PoseEstimatorOptions(...) or a preset and "
                            "keyword arguments, not both")
        #: the preset the options came from (None when ``options`` was given)
        self.preset: Preset | None = None
        if options is None:
            if model is not None:
                kwargs["model"] = model
            self.preset = get_preset(preset)
            options = PoseEstimatorOptions.from_preset(self.preset, **kwargs)
        self.options = options
        backend = options.backend
        precision = options.precision
        if parse_device(options.device)[0] != "cpu" and backend is None and precision is None:
            backend = DEVICE_BACKEND.name  # a GPU runs ONNX; LiteRT's int8 file is CPU only
        if precision is None:
            precision = default_precision(options.model, backend)
        resolved = resolve_model(options.model, backend=backend, precision=precision,
                                 verify=options.verify_sha256)
        self.model_path: Path = resolved.path
        self.card: ModelCard = resolved.card
        if backend is None:  # from the file found (a shipped int8 model is TFLite only)
            backend = backend_for_format(self.card.file_format).name
        if backend in BACKENDS and BACKENDS[backend].file_format != self.card.file_format:
            raise ModelError(f"backend {backend!r} cannot run the {self.card.file_format} file "
                             f"{self.model_path}")
        self.backend = make_backend(self.model_path, backend, options.threads,
                                    self.card.input_name, self.card.output_name, options.device)
        #: where the pose model runs (``"cpu"``, ``"cuda"``, ...): after any fallback
        self.device: str = getattr(self.backend, "device", "cpu")
        if tuple(self.backend.input_hw) != tuple(self.card.input_size):
            raise ModelError(f"card/file mismatch for {self.model_path}: card input_size "
                             f"{self.card.input_size}, model input {self.backend.input_hw}")
        self._checked_output = False
        self._oks_sigmas = np.asarray(self.card.oks_sigmas, np.float64)
        if not self.card.trained:
            logger.warning("model %s (%s) has UNTRAINED random weights: its keypoints are "
                           "meaningless; use it for testing the pipeline only",
                           self.card.name, self.model_path.name)
        if isinstance(options.detector, (str, os.PathLike)) or options.detector is None:
            self.detector: Detector = make_detector(
                options.detector, options.detector_score_threshold, options.detector_nms_iou,
                threads=options.detector_threads, device=options.device)
        else:
            self.detector = make_detector(options.detector)
        # a detector that says it is thread-safe (the ONNX ones: an onnxruntime session runs
        # calls from many threads) runs unlocked; any other (cv2.dnn, a caller's) one at a time
        self._detector_lock = contextlib.nullcontext() if getattr(
            self.detector, "thread_safe", False) else threading.Lock()
        # one pipeline per flip setting (frozen, shared by every thread); self.pipeline is
        # the one a photo gets
        self._pipelines = {flip: TopDownPipeline(
            HeatmapCodec.from_card(self.card, decode_method=options.decode),
            self.card.flip_pairs, flip_test=flip, padding=options.box_padding,
            keypoint_score_floor=options.keypoint_score_floor, max_batch=options.max_batch)
            for flip in (False, True)}
        self.pipeline = self._pipelines[self.flip_for("images")]

    def flip_for(self, kind: str) -> bool:
        """Whether frames of a source ``kind`` get the flip test: the ``flip_test`` option
        when set, else True for ``"images"`` (photos) and False for ``"video"`` /
        ``"webcam"`` (the accurate and the fast defaults of the README's speed table)."""
        if self.options.flip_test is not None:
            return bool(self.options.flip_test)
        return kind == "images"

    def detect_every_for(self, kind: str) -> int:
        """How often :meth:`stream` runs the person detector on frames of a source ``kind``
        when it is not told: every image for ``"images"`` (photos are estimated alone), else
        the ``detect_every`` option, or :data:`~evopose_sdk.video.DEFAULT_DETECT_EVERY`."""
        if kind == "images":
            return 1
        return int(self.options.detect_every or video.DEFAULT_DETECT_EVERY)

    # -- context manager ---------------------------------------------------------------
    def __enter__(self) -> PoseEstimator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the inference session."""
        if self.backend is not None:
            self.backend.close()

    def __repr__(self) -> str:
        o = self.options
        preset = f"preset={self.preset.name!r}, " if self.preset is not None else ""
        return (f"PoseEstimator({preset}model={self.card.name!r}, "
                f"file={self.model_path.name!r}, "
                f"detector={type(self.detector).__name__}, flip_test={o.flip_test}, "
                f"detect_every={o.detect_every}, device={self.device!r}, "
                f"decode={o.decode!r})")

    # -- public calls ------------------------------------------------------------------
    def estimate(self, image: ImageInput | Sequence[ImageInput],
                 boxes: np.ndarray | list | None = None, color: str = "bgr", *,
                 flip_test: bool | None = None) -> PoseResult | list[PoseResult]:
        """Find people and their keypoints in a photo, or in each photo of a list.

        Every photo is estimated alone: nothing (no track, no smoothing) carries over
        between the images of a list, so ``est([a, b])[1]`` equals ``est(b)`` bit for bit.
        Safe to call from several threads at once (see the README's thread-safety note).

        Args:
            image: (H, W, 3) uint8 BGR array (as cv2 reads it; ``color="rgb"`` for RGB),
                grayscale / 4-channel / uint16 arrays (converted), an image path, or a list /
                tuple of these (a batch).
            boxes: optional (n, 4) person boxes xyxy in image pixels; skips the detector
                (for a batch: one such array per image, or None).
            color: channel order of array input, ``"bgr"`` or ``"rgb"``.
            flip_test: override the estimator's choice (:meth:`flip_for` ``"images"``:
                on unless the ``flip_test`` option says otherwise).

        Returns:
            A :class:`PoseResult` (empty when nobody is found) that keeps the image for
            :meth:`PoseResult.plot`; a list of them for a list of images.

        Raises:
            InputError: unreadable image, None (a failed ``cv2.imread``), bad shape/dtype,
                bad boxes.
        """
        if isinstance(image, list | tuple):
            if boxes is not None and (not isinstance(boxes, list | tuple)
                                      or len(boxes) != len(image)):
                raise InputError(f"for a batch of {len(image)} images, boxes must be a list of "
                                 f"{len(image)} (n, 4) arrays (or None)")
            per_image = boxes if boxes is not None else [None] * len(image)
            return [self.estimate(img, b, color, flip_test=flip_test)
                    for img, b in zip(image, per_image, strict=True)]
        img = load_image(image, color=color, max_pixels=self.options.max_image_pixels)
        t0 = time.perf_counter()
        if boxes is None:
            det_boxes, det_scores = self.detect(img, flip_test=flip_test)
        else:
            det_boxes = validate_boxes(boxes, img.shape[:2])
            det_scores = np.ones((len(det_boxes),), np.float32)
        speed = {"detect": (time.perf_counter() - t0) * 1000.0}
        result = self._pose(img, det_boxes, det_scores, speed, flip=flip_test)
        result.image = img
        return result

    __call__ = estimate

    def detect(self, image_bgr: np.ndarray, *, flip_test: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The detector step of :meth:`estimate`: (H, W, 3) uint8 BGR -> person
        boxes_xyxy (n, 4) float32 image pixels, scores (n,) float32. A detector that can also
        look at the mirror image (YOLOX) does so with the flip test: ``flip_test``, None as
        in :meth:`estimate` (:meth:`flip_for` ``"images"``)."""
        flip = self.flip_for("images") if flip_test is None else bool(flip_test)
        with self._detector_lock:
            det_boxes, det_scores = detect_with_flip(self.detector, image_bgr, flip)
        return (np.asarray(det_boxes, np.float32).reshape(-1, 4),
                np.asarray(det_scores, np.float32).reshape(-1))

    def estimate_detections(self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray,
                            box_scores: np.ndarray, detect_ms: float = 0.0, *,
                            flip_test: bool | None = None) -> PoseResult:
        """The rest of :meth:`estimate` for boxes :meth:`detect` returned (maybe on another
        thread): top ``max_people`` by score, pose, OKS-NMS. ``estimate(img)`` equals
        ``estimate_detections(img, *detect(img))`` but for ``speed_ms`` and the kept image."""
        img = load_image(image_bgr, max_pixels=self.options.max_image_pixels)
        return self._pose(img, boxes_xyxy, box_scores, {"detect": float(detect_ms)},
                          flip=flip_test)

    def estimate_boxes(self, image: ImageInput, boxes_xyxy: np.ndarray | list,
                       box_scores: np.ndarray | list | None = None, color: str = "bgr",
                       nms: bool = False, *, flip_test: bool | None = None) -> PoseResult:
        """Pose only, for the given boxes (no detector), one person per box in box order.

        Args:
            image: as in :meth:`estimate` (one image).
            boxes_xyxy: (n, 4) boxes in image pixels.
            box_scores: (n,) scores carried into the result (default 1.0).
            nms: apply OKS-NMS (off by default so result i belongs to box i).
            flip_test: as in :meth:`estimate`.
        """
        img = load_image(image, color=color, max_pixels=self.options.max_image_pixels)
        b = validate_boxes(boxes_xyxy, img.shape[:2])
        s = np.ones((len(b),), np.float32) if box_scores is None else \
            np.asarray(box_scores, np.float32).reshape(-1)
        if s.shape != (len(b),):
            raise ValueError(f"box_scores must have shape ({len(b)},); received {s.shape}")
        return self._pose(img, b, s, {"detect": 0.0}, keep_order=not nms, flip=flip_test)

    def stream(self, source: Any, **kwargs: Any):
        """Frames and results from a video, folder or webcam: see :func:`evopose_sdk.video.stream`.

        Raises:
            TypeError: an unknown option, naming the nearest known one.
        """
        known = set(inspect.signature(video.stream).parameters) - {"estimator", "source"}
        _check_option_names(kwargs, known, "stream()")
        return video.stream(self, source, **kwargs)

    # -- internals ---------------------------------------------------------------------
    def _empty(self, image_hw: tuple[int, int], speed: dict[str, float]) -> PoseResult:
        return PoseResult.empty(image_hw, self.card.keypoint_names, self.card.skeleton, speed)

    def _run_model(self, crops: np.ndarray) -> np.ndarray:
        """The pipeline's ``run``: the backend, with the card's output shape checked once
        and non-finite heatmaps refused."""
        hm = self.backend.run(crops)
        if not self._checked_output:
            want = (*self.card.heatmap_size, self.card.num_keypoints)
            if tuple(hm.shape[1:]) != want:
                raise ModelError(
                    f"card/file mismatch for {self.model_path.name}: heatmaps of shape "
                    f"{tuple(hm.shape[1:])}, but the card (input {self.card.input_size}, stride "
                    f"{self.card.heatmap_stride}, {self.card.num_keypoints} keypoints) gives {want}")
            self._checked_output = True
        if not np.isfinite(hm).all():
            raise ModelError(f"{self.model_path.name} produced NaN or infinite heatmaps "
                             f"({int((~np.isfinite(hm)).sum())} values): the file is broken")
        return hm

    def _pose(self, img: np.ndarray, boxes: np.ndarray, box_scores: np.ndarray,
              speed: dict[str, float], keep_order: bool = False,
              flip: bool | None = None) -> PoseResult:
        h, w = img.shape[:2]
        opts = self.options
        t0 = time.perf_counter()
        if len(boxes):
            boxes = boxes.copy()
            boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
            boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            if not keep_order:
                boxes, box_scores = boxes[ok], box_scores[ok]
                order = np.argsort(-box_scores, kind="stable")[: int(opts.max_people)]
                boxes, box_scores = boxes[order], box_scores[order]
        n = len(boxes)
        if n == 0:
            speed.update(preprocess=(time.perf_counter() - t0) * 1000.0, pose=0.0, postprocess=0.0)
            return self._empty((h, w), speed)
        pipeline = self.pipeline if flip is None else self._pipelines[bool(flip)]
        crops = pipeline.preprocess(img, boxes)
        t1 = time.perf_counter()
        heatmaps = pipeline.heatmaps(self._run_model, crops.images)
        t2 = time.perf_counter()
        poses = pipeline.postprocess(heatmaps, crops.matrices, box_scores)
        img_xy, inst = poses.keypoints_xy, poses.instance_scores
        keypoints = poses.keypoints
        if keep_order:
            keep = np.arange(n)
        else:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            if opts.oks_nms is not None and n > 1:
                keep = oks_nms(img_xy, inst, areas, opts.oks_nms, self._oks_sigmas)
            else:
                keep = np.argsort(-inst, kind="stable")
        t3 = time.perf_counter()
        speed.update(preprocess=(t1 - t0) * 1000.0, pose=(t2 - t1) * 1000.0,
                     postprocess=(t3 - t2) * 1000.0)
        return PoseResult(boxes[keep], box_scores[keep], keypoints[keep], inst[keep],
                          np.full((len(keep),), -1, np.int64), (h, w), self.card.keypoint_names,
                          self.card.skeleton, speed)
