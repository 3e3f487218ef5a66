"""The steps that change a training view: views on the image (truncation, half body, random
scale / rotation / flip), the crop itself, and views on the crop (pasted people, occluders,
colour jitter, blur and low resolution). Each is registered under its ``name``
(:func:`~evopose_sdk.training.step.register_step`) for ``data.pipeline``.
"""

from __future__ import annotations

import numpy as np

from evopose_sdk import geometry
from evopose_sdk.skeleton import flip_permutation
from evopose_sdk.training import augment as augmod
from evopose_sdk.training.step import ProbStep, Step, View, register_step

# ------------------------------------------------------------------ views on the image

@register_step
class Truncate(ProbStep):
    """The frame cuts through the person (:func:`augment.truncate`), with ``prob``."""

    name = "truncate"

    def __init__(self, prob: float = 0.3) -> None:
        super().__init__(prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        if self.prob > 0 and rng.random() < self.prob:
            x1, y1, x2, y2 = view.box
            cut = augmod.truncate(view.image, np.array([x1, y1, x2 - x1, y2 - y1]),
                                  view.keypoints, rng)
            if cut is not None:
                view.image, view.box, view.keypoints = cut
                view.truncated = True


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


@register_step
class HalfBody(Step):
    """Crop to the upper or lower body (padding 1.5) when more than ``min_joints`` joints
    are labelled, with ``prob``; never after a truncation."""

    name = "half_body"

    def __init__(self, prob: float = 0.3, min_joints: int = 8) -> None:
        self.prob = float(prob)
        self.min_joints = int(min_joints)

    @property
    def active(self) -> bool:
        return self.prob > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        upper = view.ctx.upper_body
        if (not view.truncated and upper is not None and len(upper) and self.prob > 0
                and int((view.keypoints[:, 2] > 0).sum()) > self.min_joints
                and rng.random() < self.prob):
            hb = _half_body_box(view.keypoints, upper, rng)
            if hb is not None:
                view.box, view.padding = hb, 1.5


@register_step
class RandomAffine(Step):
    """Crop scale ``1 + U(-scale_factor, scale_factor)``, rotation ``U(-rotation, rotation)``
    degrees with ``rotation_prob``, horizontal flip with ``flip_prob`` (applied by ``crop``)."""

    name = "random_affine"

    def __init__(self, scale_factor: float = 0.3, rotation: float = 40.0,
                 rotation_prob: float = 0.6, flip_prob: float = 0.5) -> None:
        self.scale_factor = float(scale_factor)
        self.rotation = float(rotation)
        self.rotation_prob = float(rotation_prob)
        self.flip_prob = float(flip_prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.scale = 1.0 + rng.uniform(-self.scale_factor, self.scale_factor)
        if rng.random() < self.rotation_prob:
            view.rotation = rng.uniform(-self.rotation, self.rotation)
        view.flip = rng.random() < self.flip_prob


# ------------------------------------------------------------------ the crop

def flip_matrix(width: int) -> np.ndarray:
    """(2, 3) affine of a horizontal mirror of a ``width``-pixel crop (pixel centres)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine of ``outer(inner(x))``."""
    o = np.vstack([outer, [0.0, 0.0, 1.0]])
    i = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (o @ i)[:2]


@register_step
class Crop(Step):
    """Warp the box (at the model's aspect ratio, padded) to the model input; keypoints
    follow the same affine; a flip swaps left and right."""

    name = "crop"

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        ctx = view.ctx
        h, w = ctx.input_hw
        center, size = geometry.box_to_center_size(view.box, w / h, view.padding)
        matrix = geometry.crop_affine(center, size * view.scale, (h, w), view.rotation)
        if view.flip:
            matrix = compose_affine(flip_matrix(w), matrix)
        view.crop = geometry.warp_crop(view.image, matrix, (h, w))
        kp_crop = geometry.apply_affine(view.keypoints[:, :2], matrix)
        valid = view.keypoints[:, 2] > 0
        if view.flip:
            perm = flip_permutation(view.keypoints.shape[0], ctx.flip_pairs)
            kp_crop, valid = kp_crop[perm], valid[perm]
        view.matrix, view.kp_crop, view.valid = matrix, kp_crop, valid
        view.hidden = np.zeros_like(valid)


# ------------------------------------------------------------------ views on the crop

@register_step
class PastePerson(ProbStep):
    """Another training person pasted in front (:func:`augment.paste_person`), with
    ``prob``; the labelled joints it covers are marked hidden."""

    name = "paste_person"
    uses_other = True

    def __init__(self, prob: float = 0.25) -> None:
        super().__init__(prob)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if view.other is not None and self.prob > 0 and rng.random() < self.prob:
            alpha = np.zeros(view.crop.shape[:2], np.float32)
            view.crop = augmod.paste_person(view.crop, view.other[0], view.other[1], rng,
                                            alpha_out=alpha)
            view.cover(alpha)


@register_step
class Occlude(ProbStep):
    """Patches of another photo over the crop (:func:`augment.occlude`), with ``prob``;
    ``count`` patches at most; the labelled joints they cover are marked hidden."""

    name = "occlude"
    uses_other = True

    def __init__(self, prob: float = 0.25, count: int = 2) -> None:
        super().__init__(prob)
        self.count = int(count)

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if view.other is not None and self.prob > 0 and rng.random() < self.prob:
            alpha = np.zeros(view.crop.shape[:2], np.float32)
            view.crop = augmod.occlude(view.crop, view.other[0], rng, count=self.count,
                                       alpha_out=alpha)
            view.cover(alpha)


@register_step
class ColorJitter(Step):
    """Brightness, contrast and saturation factors drawn from ``1 + U(-amount, amount)``."""

    name = "color_jitter"

    def __init__(self, amount: float = 0.2) -> None:
        self.amount = float(amount)

    @property
    def active(self) -> bool:
        return self.amount > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if self.amount <= 0:
            return
        img = view.crop.astype(np.float32)
        b, c, s = 1.0 + rng.uniform(-self.amount, self.amount, size=3)
        img = img * b
        mean = img.mean()
        img = (img - mean) * c + mean
        gray = img.mean(axis=2, keepdims=True)
        img = (img - gray) * s + gray
        view.crop = np.clip(img, 0, 255).astype(np.uint8)


@register_step
class Degrade(Step):
    """A low-resolution round trip with ``lowres_prob``, else blur with ``blur_prob``
    (:func:`augment.degrade`); one draw decides."""

    name = "degrade"

    def __init__(self, blur_prob: float = 0.1, lowres_prob: float = 0.1) -> None:
        self.blur_prob = float(blur_prob)
        self.lowres_prob = float(lowres_prob)

    @property
    def active(self) -> bool:
        return self.blur_prob > 0 or self.lowres_prob > 0

    def __call__(self, view: View, rng: np.random.Generator) -> None:
        view.need_crop(self.name)
        if not self.active:
            return
        r = rng.random()
        if r < self.lowres_prob:
            view.crop = augmod.degrade(view.crop, rng, lowres=True)
        elif r < self.lowres_prob + self.blur_prob:
            view.crop = augmod.degrade(view.crop, rng, lowres=False)
