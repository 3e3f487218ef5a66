"""Augmentations that make the training people look like the people users film.

The sources are mostly one whole, centred sports figure per image (LSP/LSPET/PARSE); users'
frames show people cut by the frame edge, hidden behind things and each other, small and
blurred. Each function here takes a numpy RNG and returns new arrays (inputs untouched):

* :func:`truncate`: the frame ends inside the person (image zeroed past a cut line, as the
  runtime's crop pads outside the frame; joints beyond it unlabelled; the box shrinks to
  what a detector would see).
* :func:`paste_person`: another training person pasted over part of the crop, in front.
* :func:`occlude`: an elliptical or rectangular patch of another photo over the crop.
* :func:`degrade`: Gaussian or motion blur, or a low-resolution round trip.

Labels of occluded joints are kept (COCO labels hidden joints too); only truncation removes
labels, since a joint outside the frame has none.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Which side of the person the frame cuts, and how often (bottom: half bodies at a desk or
#: the frame's lower edge, the commonest case in photos and video).
CUT_SIDES = ("bottom", "left", "right", "top")
CUT_SIDE_P = (0.55, 0.175, 0.175, 0.1)


def truncate(image: np.ndarray, box_xywh: np.ndarray, keypoints: np.ndarray,
             rng: np.random.Generator, keep: tuple[float, float] = (0.35, 0.85),
             min_joints: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Cut the frame through the person.

    Args:
        image: (H, W, 3) uint8; box_xywh: (4,) person box; keypoints: (K, 3) x, y, v pixels.
        keep: fraction of the labelled-joint extent kept, drawn uniformly.
        min_joints: give up (None) unless this many labelled joints remain.

    Returns:
        (image with the cut-off part zeroed, box xyxy (4,) of the visible part,
        keypoints (K, 3) with the cut-off joints unlabelled), or None.
    """
    vis = keypoints[:, 2] > 0
    if vis.sum() < min_joints + 2:
        return None
    pts = keypoints[vis, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = CUT_SIDES[rng.choice(len(CUT_SIDES), p=CUT_SIDE_P)]
    frac = rng.uniform(*keep)
    h, w = image.shape[:2]
    x, y, bw, bh = (float(v) for v in box_xywh)
    box = np.array([x, y, x + bw, y + bh])
    kps = keypoints.copy()
    out = image.copy()
    if side == "bottom":
        cut = lo[1] + frac * (hi[1] - lo[1])
        gone = kps[:, 1] > cut
        out[int(np.ceil(cut)):] = 0
        box[3] = min(box[3], cut)
    elif side == "top":
        cut = hi[1] - frac * (hi[1] - lo[1])
        gone = kps[:, 1] < cut
        out[:max(int(np.floor(cut)), 0)] = 0
        box[1] = max(box[1], cut)
    elif side == "right":
        cut = lo[0] + frac * (hi[0] - lo[0])
        gone = kps[:, 0] > cut
        out[:, int(np.ceil(cut)):] = 0
        box[2] = min(box[2], cut)
    else:
        cut = hi[0] - frac * (hi[0] - lo[0])
        gone = kps[:, 0] < cut
        out[:, :max(int(np.floor(cut)), 0)] = 0
        box[0] = max(box[0], cut)
    gone &= vis
    if (vis & ~gone).sum() < min_joints:
        return None
    kps[gone] = 0.0
    box[[0, 2]] = np.clip(box[[0, 2]], 0, w - 1)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, h - 1)
    return out, box, kps


def _soft_mask(h: int, w: int, shape: str, rng: np.random.Generator) -> np.ndarray:
    """(h, w) float32 alpha in [0, 1]: an ellipse or a rectangle with a feathered edge."""
    m = np.zeros((h, w), np.float32)
    if shape == "ellipse":
        cv2.ellipse(m, (w // 2, h // 2), (max(w // 2 - 1, 1), max(h // 2 - 1, 1)),
                    float(rng.uniform(0, 180)) if h == w else 0.0, 0, 360, 1.0, -1)
    else:
        m[:] = 1.0
    k = max(3, (min(h, w) // 8) | 1)
    return cv2.GaussianBlur(m, (k, k), 0)


def _blend(crop: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x0: int, y0: int,
           alpha_out: np.ndarray | None = None) -> None:
    """Alpha-blend ``patch`` (ph, pw, 3) into ``crop`` in place at (x0, y0), clipped;
    ``alpha_out`` ((h, w) float32), when given, keeps the largest alpha laid on each pixel."""
    ch, cw = crop.shape[:2]
    ph, pw = patch.shape[:2]
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + pw, cw), min(y0 + ph, ch)
    if xb <= xa or yb <= ya:
        return
    p = patch[ya - y0:yb - y0, xa - x0:xb - x0].astype(np.float32)
    a = alpha[ya - y0:yb - y0, xa - x0:xb - x0, None]
    region = crop[ya:yb, xa:xb].astype(np.float32)
    crop[ya:yb, xa:xb] = np.clip(region * (1 - a) + p * a, 0, 255).astype(np.uint8)
    if alpha_out is not None:
        np.maximum(alpha_out[ya:yb, xa:xb], a[..., 0], out=alpha_out[ya:yb, xa:xb])


def paste_person(crop: np.ndarray, other: np.ndarray, other_box_xywh: np.ndarray,
                 rng: np.random.Generator, alpha_out: np.ndarray | None = None) -> np.ndarray:
    """Paste another person (``other`` image, its box) in front of the crop's person, off
    centre so that it hides part of them, as a neighbour in a crowd does.

    Returns a new (h, w, 3) uint8 crop; the crop's labels are unchanged. ``alpha_out``
    ((h, w) float32) receives the coverage of the pasted person.
    """
    h, w = crop.shape[:2]
    x, y, bw, bh = (float(v) for v in other_box_xywh)
    H, W = other.shape[:2]
    x1, y1 = int(max(x, 0)), int(max(y, 0))
    x2, y2 = int(min(x + bw, W)), int(min(y + bh, H))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return crop
    person = other[y1:y2, x1:x2]
    ph = int(h * rng.uniform(0.55, 1.1))
    pw = max(int(ph * (x2 - x1) / (y2 - y1)), 4)
    pw = min(pw, int(w * 0.9))
    person = cv2.resize(person, (pw, ph), interpolation=cv2.INTER_LINEAR)
    side = 1 if rng.random() < 0.5 else -1
    cx = w / 2 + side * rng.uniform(0.3, 0.75) * w
    cy = h / 2 + rng.uniform(-0.15, 0.25) * h
    out = crop.copy()
    _blend(out, person, _soft_mask(ph, pw, "ellipse", rng), int(cx - pw / 2), int(cy - ph / 2),
           alpha_out)
    return out


def occlude(crop: np.ndarray, texture: np.ndarray, rng: np.random.Generator,
            count: int = 2, alpha_out: np.ndarray | None = None) -> np.ndarray:
    """Cover 1..``count`` ellipses or rectangles (10-35 % of each side) of the crop with
    patches of ``texture`` (any (H, W, 3) uint8 photo). Returns a new crop; ``alpha_out``
    ((h, w) float32) receives the patches' coverage."""
    h, w = crop.shape[:2]
    out = crop.copy()
    for _ in range(int(rng.integers(1, count + 1))):
        ph = int(h * rng.uniform(0.1, 0.35))
        pw = int(w * rng.uniform(0.15, 0.45))
        th, tw = texture.shape[:2]
        sy = int(rng.integers(0, max(th - ph, 1)))
        sx = int(rng.integers(0, max(tw - pw, 1)))
        patch = texture[sy:sy + ph, sx:sx + pw]
        if patch.shape[0] < 2 or patch.shape[1] < 2:
            continue
        patch = cv2.resize(patch, (pw, ph), interpolation=cv2.INTER_LINEAR)
        shape = "ellipse" if rng.random() < 0.5 else "rect"
        x0 = int(rng.integers(0, max(w - pw, 1)))
        y0 = int(rng.integers(0, max(h - ph, 1)))
        _blend(out, patch, _soft_mask(ph, pw, shape, rng), x0, y0, alpha_out)
    return out


def degrade(crop: np.ndarray, rng: np.random.Generator, lowres: bool) -> np.ndarray:
    """Blur (Gaussian sigma 0.6-2 px, or motion blur 3-9 px at a random angle) or, with
    ``lowres``, a down-up round trip by 2-4x (a small person enlarged to the input)."""
    h, w = crop.shape[:2]
    if lowres:
        f = rng.uniform(2.0, 4.0)
        small = cv2.resize(crop, (max(int(w / f), 1), max(int(h / f), 1)),
                           interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        return cv2.GaussianBlur(crop, (0, 0), float(rng.uniform(0.6, 2.0)))
    n = int(rng.integers(3, 10))
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0 / n
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = cv2.warpAffine(k, rot, (n, n))
    k /= max(float(k.sum()), 1e-6)
    return cv2.filter2D(crop, -1, k)
