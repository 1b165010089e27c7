"""Offline face detection (OpenCV Haar cascades), face crop plans, paste masks and 5-point alignment.

The cascades ship inside `opencv-python-headless<5` (`cv2.data.haarcascades`), so detection needs no
download. Haar gives boxes (and, with the eye cascade, rough eye centres), not landmarks: the 5
points used for alignment are the two eyes when found plus nose/mouth placed by the FFHQ template's
proportions relative to the box. A real landmark detector can fill `Face.landmarks` instead.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from tiling.geometry import Rect

from .geometry import InpaintPlan
from .masks import blend_mask, to_alpha

# FFHQ 5-point template at 512x512 (left eye, right eye, nose tip, left/right mouth corner), as used by
# GFPGAN/CodeFormer-class restorers: faces must be warped onto these points before restoring.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)

# The same 5 points as fractions of a frontal Haar box (eyes measured on real detections; the rest
# follow the template's proportions from the eye line).
_BOX_POINTS = np.array([[0.31, 0.38], [0.69, 0.38], [0.5, 0.60], [0.33, 0.77], [0.67, 0.77]], dtype=np.float32)

_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
_EYE_CASCADE = "haarcascade_eye.xml"


@dataclass(frozen=True, slots=True)
class Face:
    """A detected face: box in image pixels, score in (0, 1] (fraction of cascades that agree),
    eye centres (image-left eye first) when found, optional 5x2 landmarks from a better detector."""

    box: Rect
    score: float
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + name
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise RuntimeError(f"OpenCV Haar cascade {path} could not be loaded (opencv-python-headless<5 is required)")
    return c


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    # Histogram equalisation makes the cascades far less sensitive to exposure.
    return cv2.equalizeHist(img.astype(np.uint8))


def iou(a: Rect, b: Rect) -> float:
    inter = a.intersection(b).area
    return inter / (a.area + b.area - inter) if inter else 0.0


def _merge(boxes: list[tuple[Rect, int]], n_sources: int, threshold: float) -> list[Face]:
    """Greedy clustering of overlapping boxes from several cascades into one face each."""
    clusters: list[list[tuple[Rect, int]]] = []
    for box, src in sorted(boxes, key=lambda b: -b[0].area):
        for cl in clusters:
            if iou(cl[0][0], box) > threshold or cl[0][0].contains(box) or box.contains(cl[0][0]):
                cl.append((box, src))
                break
        else:
            clusters.append([(box, src)])
    faces = []
    for cl in clusters:
        xs = np.array([[b.x, b.y, b.right, b.bottom] for b, _ in cl], dtype=np.float64).mean(axis=0)
        box = Rect.from_bounds(*(round(v) for v in xs))
        faces.append(Face(box, len({s for _, s in cl}) / n_sources))
    return faces


def _find_eyes(gray: np.ndarray, box: Rect) -> tuple[tuple[float, float], tuple[float, float]] | None:
    top = box.y + int(box.h * 0.15)
    roi = gray[top : box.y + int(box.h * 0.6), box.x : box.right]
    if roi.size == 0:
        return None
    ms = max(6, box.w // 8)
    hits = _cascade(_EYE_CASCADE).detectMultiScale(roi, 1.1, 3, minSize=(ms, ms), maxSize=(box.w // 2, box.w // 2))
    centres = [(box.x + x + w / 2, top + y + h / 2) for x, y, w, h in hits]
    left = [c for c in centres if c[0] < box.x + box.w / 2]
    right = [c for c in centres if c[0] >= box.x + box.w / 2]
    if not left or not right:
        return None
    # Outermost candidates on each side: inner hits are usually the nose bridge or eyebrows.
    le, re = min(left, key=lambda c: c[0]), max(right, key=lambda c: c[0])
    dist = math.dist(le, re)
    angle = abs(math.degrees(math.atan2(re[1] - le[1], re[0] - le[0])))
    if not (0.25 * box.w <= dist <= 0.75 * box.w) or angle > 30:
        return None
    return le, re


def detect_faces(
    image: np.ndarray,
    *,
    min_size_ratio: float = 0.05,
    min_neighbors: int = 5,
    scale_factor: float = 1.1,
    min_votes: int = 1,
    merge_iou: float = 0.3,
    find_eyes: bool = True,
    max_side: int = 1024,
) -> list[Face]:
    """Frontal faces in an RGB(A)/grey uint8 image, largest first.

    Two cascades vote; boxes overlapping by `merge_iou` merge into one face whose score is the
    fraction of cascades that found it (`min_votes=2` trades recall for fewer false positives).
    Faces smaller than `min_size_ratio` of the image's shorter side are ignored (noise). Images
    larger than `max_side` are searched on a downscaled copy (Haar cost grows with the pixel count;
    faces that small relative to the image are below `min_size_ratio` anyway).
    """
    full = _gray(image)
    f = min(1.0, max_side / max(full.shape))
    gray = full if f == 1.0 else cv2.resize(full, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    ms = max(24, round(min(gray.shape) * min_size_ratio))
    boxes: list[tuple[Rect, int]] = []
    for i, name in enumerate(_CASCADES):
        hits = _cascade(name).detectMultiScale(gray, scale_factor, min_neighbors, minSize=(ms, ms))
        boxes += [(Rect(int(x), int(y), int(w), int(h)), i) for x, y, w, h in hits]
    faces = [f for f in _merge(boxes, len(_CASCADES), merge_iou) if f.score * len(_CASCADES) >= min_votes]
    if f != 1.0:
        h, w = full.shape
        faces = [Face(face.box.scaled(1 / f).clamped(w, h), face.score) for face in faces]
    if find_eyes:
        # Eyes on the full-resolution image: they are small, downscaling would lose them.
        faces = [Face(face.box, face.score, _find_eyes(full, face.box)) for face in faces]
    return sorted(faces, key=lambda face: -face.box.area)


# --- re-render: crop plan and elliptical paste mask ---------------------------------------------


def plan_face_crop(
    face: Face | Rect, canvas_size: tuple[int, int], target: int = 512, padding: float = 0.5
) -> InpaintPlan:
    """Square crop around a face (box grown by `padding` x its size on each side), shifted inside the
    canvas (shrunk to the canvas' shorter side if needed), processed at `target`² (a multiple of 8).

    Returned as an `InpaintPlan` so `extract_crop`/`restore_crop` apply; the crop side need not be a
    multiple of 8 because it is always resized to the processing size.
    """
    box = face.box if isinstance(face, Face) else face
    w, h = canvas_size
    side = min(round(max(box.w, box.h) * (1 + 2 * padding)), w, h)
    cx, cy = box.center
    x = min(max(round(cx - side / 2), 0), w - side)
    y = min(max(round(cy - side / 2), 0), h - side)
    crop = Rect(x, y, side, side)
    t = max(8, target // 8 * 8)
    return InpaintPlan((w, h), box, crop, (0, 0), (t, t), t / side)


def ellipse_mask(size: tuple[int, int], box: Rect, grow: float = 0.15, feather_px: int | None = None) -> np.ndarray:
    """Feathered elliptical paste mask (float32 HxW for `size` = (w, h)) around `box`.

    The ellipse is the box grown by `grow` x its size (faces are taller than Haar boxes); alpha is
    exactly 0 outside it and ramps to 1 over `feather_px` (default: a fifth of the box) inward.
    """
    w, h = size
    m = np.zeros((h, w), np.uint8)
    cx, cy = box.center
    axes = (max(1, round(box.w * (0.5 + grow))), max(1, round(box.h * (0.5 + grow * 1.3))))
    cv2.ellipse(m, (round(cx), round(cy)), axes, 0, 0, 360, 255, -1)
    feather = feather_px if feather_px is not None else max(2, round(min(box.w, box.h) / 5))
    return blend_mask(m, grow_px=0, feather_px=feather)


# --- alignment for restorers -----------------------------------------------------------------------


def face_points(face: Face) -> np.ndarray:
    """5x2 float32 landmarks: the detector's own, else eyes + box-derived nose/mouth, else all from the box."""
    if face.landmarks is not None:
        return np.asarray(face.landmarks, dtype=np.float32).reshape(5, 2)
    b = face.box
    pts = _BOX_POINTS * np.float32([b.w, b.h]) + np.float32([b.x, b.y])
    if face.eyes is not None:
        eyes = np.asarray(face.eyes, dtype=np.float32)
        # Rotate/scale the box layout so its eyes land on the measured ones; keeps nose/mouth consistent.
        m, _ = cv2.estimateAffinePartial2D(pts[:2], eyes)
        if m is not None:
            pts = cv2.transform(pts[None], m)[0]
            pts[:2] = eyes
    return pts.astype(np.float32)


def align_face(image: np.ndarray, face: Face, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face onto the FFHQ template at `size`²: returns (aligned uint8, 2x3 image->aligned affine)."""
    dst = FFHQ_TEMPLATE_512 * (size / 512)
    affine, _ = cv2.estimateAffinePartial2D(face_points(face), dst, method=cv2.LMEDS)
    if affine is None:
        raise ValueError(f"cannot align face at {face.box}: degenerate landmarks")
    img = np.asarray(image)[..., :3]
    aligned = cv2.warpAffine(img, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return aligned, affine


def template_mask(size: int = 512, feather_px: int | None = None) -> np.ndarray:
    """Default paste mask in aligned space: a feathered ellipse over the face area of the template."""
    s = size / 512
    box = Rect(round(96 * s), round(120 * s), round(320 * s), round(330 * s))
    return ellipse_mask((size, size), box, grow=0.0, feather_px=feather_px or max(2, round(48 * s)))


def paste_back(
    image: np.ndarray,
    restored: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    blend: float = 1.0,
) -> tuple[np.ndarray, Rect]:
    """Inverse-warp an aligned `restored` face into `image` through a feathered mask.

    Returns (new image, rectangle that changed). Pixels where the warped mask rounds to alpha 0 are
    bit-identical to the input (integer compositing); `blend` scales the mask (0 = no change).
    """
    out = np.array(image, copy=True)
    size = restored.shape[0]
    mask = template_mask(size) if mask is None else mask
    inv = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))
    corners = cv2.transform(np.float32([[[0, 0], [size, 0], [0, size], [size, size]]]), inv)[0]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    region = Rect.from_bounds(int(x0), int(y0), int(x1), int(y1)).clamped(out.shape[1], out.shape[0])
    if region.is_empty or blend <= 0:
        return out, Rect(0, 0, 0, 0)
    # Warp straight into the region (not the whole canvas): translate the inverse by its origin.
    local = inv.copy()
    local[:, 2] -= (region.x, region.y)
    dsize = (region.w, region.h)
    face = cv2.warpAffine(restored[..., :3], local, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha_f = cv2.warpAffine(mask.astype(np.float32), local, dsize, flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = to_alpha(np.clip(alpha_f, 0, 1) * min(blend, 1.0))
    dst = out[region.slices]
    a = alpha[..., None].astype(np.uint16)
    mixed = (face.astype(np.uint16) * a + dst[..., :3].astype(np.uint16) * (255 - a) + 127) // 255
    dst[..., :3] = mixed.astype(np.uint8)
    ys, xs = np.nonzero(alpha)
    if len(xs) == 0:
        return out, Rect(0, 0, 0, 0)
    changed = Rect.from_bounds(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return out, changed.shifted(region.x, region.y)
