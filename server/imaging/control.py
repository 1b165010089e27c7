"""Control images from editor layers, with the preprocessors that need no downloaded model.

Every function takes an editor layer as decoded (HxWx4 uint8 RGBA; HxWx3 is read as opaque) and
returns the ControlNet's input: HxWx3 float32 in [0, 1] — white structure on black for the edge and
line kinds, as the ControlNet v1.1 models were trained. The inpaint conditioning image also uses -1
for the pixels to fill (the v1.1 inpaint model's convention).

- `as_is`: the layer itself (a depth/normal/pose map the editor already has); transparent pixels
  count as black (no structure), opaque layers are exactly `pixels / 255` (as diffusers prepares them);
- `canny`: OpenCV Canny on the colour image;
- `lineart` / `scribble`: line art or a scribble drawn on a layer: strokes from the alpha of a transparent layer or
  from the luminance of an opaque one, inverted when the strokes are dark on a light ground;
- `softedge`: soft multi-scale gradient edges (HED-like, without the HED network);
- `tile`: the picture made softer (downscaled and scaled back, or blurred), for tile/unblur models;
- `inpaint`: the picture with the area to fill marked -1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np


def _rgba(layer: np.ndarray) -> np.ndarray:
    if layer.ndim == 2:
        layer = np.dstack([layer] * 3)
    if layer.shape[2] == 3:
        layer = np.dstack([layer, np.full(layer.shape[:2], 255, np.uint8)])
    return layer


def _gray3(values: np.ndarray) -> np.ndarray:
    """HxW float [0, 1] → HxWx3 float32."""
    return np.repeat(values.astype(np.float32)[..., None], 3, axis=2)


def layer_at(layer: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A layer (RGBA uint8) at `size` (w, h): itself, or resized (area-averaged down, bilinear up)."""
    rgba = _rgba(layer)
    if (rgba.shape[1], rgba.shape[0]) == size:
        return rgba
    shrink = size[0] < rgba.shape[1]
    return cv2.resize(rgba, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def as_is(layer: np.ndarray) -> np.ndarray:
    rgba = _rgba(layer)
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3]
    if (alpha == 255).all():
        return rgb
    return rgb * (alpha.astype(np.float32) / 255.0)[..., None]


def canny(layer: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    rgb = np.ascontiguousarray(_rgba(layer)[..., :3])
    return _gray3(cv2.Canny(rgb, low, high) / 255.0)


def stroke_strength(layer: np.ndarray, invert: bool | None = None) -> np.ndarray:
    """How much ink each pixel holds, HxW float [0, 1]. A layer with transparency: its alpha (the drawn
    strokes), flipped when `invert`. An opaque layer: its luminance, inverted (dark ink on a light
    ground) when `invert`, or, when None, when most of the layer is light."""
    rgba = _rgba(layer)
    alpha = rgba[..., 3]
    if (alpha < 255).any():
        ink = alpha.astype(np.float32) / 255.0
        return 1.0 - ink if invert else ink
    lum = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    if invert is None:
        invert = float(np.median(lum)) > 0.5
    return 1.0 - lum if invert else lum


def lineart(layer: np.ndarray, threshold: float = 0.5, invert: bool | None = None) -> np.ndarray:
    """Line art: ink below `threshold` is dropped (a clean black ground), anti-aliased ink above kept."""
    ink = stroke_strength(layer, invert)
    return _gray3(np.where(ink >= threshold, ink, 0.0))


def scribble(layer: np.ndarray, threshold: float = 0.5, invert: bool | None = None, width: int = 3) -> np.ndarray:
    """A scribble: ink at or above `threshold` as solid white strokes, widened to about `width` px
    (the scribble models were trained on thick strokes)."""
    ink = (stroke_strength(layer, invert) >= threshold).astype(np.uint8)
    if width > 1:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    return _gray3(ink.astype(np.float32))


def softedge(layer: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Soft edges: gradient magnitude at two scales of the luminance, normalised to the strong edges
    (99th percentile = 1) and lifted by a gamma, so faint contours stay visible without a hard cut."""
    rgb = np.ascontiguousarray(_rgba(layer)[..., :3])
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    total = np.zeros_like(lum)
    for s in (sigma, 2 * sigma):
        smooth = cv2.GaussianBlur(lum, (0, 0), s)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
        total += np.sqrt(gx * gx + gy * gy)
    top = float(np.percentile(total, 99))
    if top <= 1e-6:
        return _gray3(np.zeros_like(lum))
    return _gray3(np.clip(total / top, 0.0, 1.0) ** 0.6)


def tile(layer: np.ndarray, downscale: float = 1.0) -> np.ndarray:
    """The picture for tile models: as is, or downscaled by `downscale` (area) and scaled back (cubic)."""
    rgb = np.ascontiguousarray(_rgba(layer)[..., :3])
    if downscale > 1.0:
        h, w = rgb.shape[:2]
        size = (max(1, round(w / downscale)), max(1, round(h / downscale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return rgb.astype(np.float32) / 255.0


def blur(layer: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The picture Gaussian-blurred by `sigma` px (unblur / tile models)."""
    rgb = np.ascontiguousarray(_rgba(layer)[..., :3])
    if sigma > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    return rgb.astype(np.float32) / 255.0


def inpaint(layer: np.ndarray, fill: np.ndarray | None = None) -> np.ndarray:
    """The picture in [0, 1] with the pixels to fill at -1: where the layer is transparent (alpha < 128)
    and, when given, where `fill` (HxW uint8 selection) is > 127."""
    rgba = _rgba(layer)
    out = rgba[..., :3].astype(np.float32) / 255.0
    hole = rgba[..., 3] < 128
    if fill is not None:
        hole |= fill > 127
    out[hole] = -1.0
    return out


PREPROCESSORS: dict[str, Callable[..., np.ndarray]] = {
    "none": as_is,
    "canny": canny,
    "lineart": lineart,
    "scribble": scribble,
    "softedge": softedge,
    "tile": tile,
    "blur": blur,
    "inpaint": inpaint,
}


def preprocess(layer: np.ndarray, kind: str, **options: Any) -> np.ndarray:
    """Run the preprocessor named `kind` (a key of `PREPROCESSORS`) with its options."""
    return PREPROCESSORS[kind](layer, **options)


Resampler = Callable[[np.ndarray, "int | None"], np.ndarray]


def resample(control: np.ndarray, fn: Resampler) -> np.ndarray:
    """`fn(array, interpolation)` — a resize, or a crop and resize (`imaging.geometry.extract_crop`) —
    applied to a control image: values smoothly (`interpolation` None: the resampler's default), the
    inpaint holes (-1) as a hard nearest-neighbour mask, so no hole edge is blurred into the picture."""
    hole = (control < 0).any(axis=2)
    out = fn(np.where(hole[..., None], 0.0, control).astype(np.float32), None)
    if hole.any():
        out[fn(hole.astype(np.uint8), cv2.INTER_NEAREST) > 0] = -1.0
    return out


def resized(control: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A control image at `size` (w, h): area-averaged when shrinking, bilinear when enlarging."""
    if (control.shape[1], control.shape[0]) == size:
        return control

    def fn(a: np.ndarray, interpolation: int | None) -> np.ndarray:
        shrink = size[0] < a.shape[1]
        default = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(a, size, interpolation=default if interpolation is None else interpolation)

    return resample(control, fn)


def placed(control: np.ndarray, size: tuple[int, int], x: int, y: int) -> np.ndarray:
    """A control image put at (x, y) of a larger black canvas of `size` (w, h): no structure elsewhere."""
    out = np.zeros((size[1], size[0], 3), np.float32)
    out[y : y + control.shape[0], x : x + control.shape[1]] = control
    return out


def to_display(control: np.ndarray) -> np.ndarray:
    """A control image as HxWx3 uint8 to show or store as a layer (the inpaint -1 shows as black)."""
    return (np.clip(control, 0.0, 1.0) * 255.0).round().astype(np.uint8)
