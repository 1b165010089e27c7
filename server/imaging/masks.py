"""The two masks derived from an editor's soft selection (uint8 HxW, 0-255).

- denoise mask: where and how strongly the sampler may change pixels (grown + feathered outward, so
  the selection itself keeps full strength and the model can blend into a little surrounding);
- blend mask: only the alpha of the returned rectangle (feathered inward from the grown edge, so the
  outer border fades to zero and everything outside the grown selection is exactly zero).

Both are float32 in [0, 1]. They are separate on purpose: a soft sampling edge and a soft paste
edge at different places is what avoids visible seams and colour rims.
"""

from __future__ import annotations

import cv2
import numpy as np

from tiling.geometry import Rect

from .geometry import LATENT_FACTOR, mask_bbox


def _as_float(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Grey-level dilation by a disc of radius `px` (soft values spread with their strength)."""
    m = _as_float(mask)
    if px <= 0:
        return m
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(m, kernel)


def _blur(m: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return m
    # sigma = px/2 puts nearly the whole ramp inside a `px`-wide band.
    return cv2.GaussianBlur(m, (0, 0), sigmaX=px / 2, borderType=cv2.BORDER_REPLICATE)


def denoise_mask(selection: np.ndarray, grow_px: int = 8, feather_px: int = 8) -> np.ndarray:
    """Per-pixel sampling strength: selection grown by `grow_px`, then feathered outward by `feather_px`.

    The selected pixels keep their full strength (the blur never lowers them).
    """
    sel = _as_float(selection)
    soft = _blur(grow(sel, grow_px), feather_px)
    return np.maximum(soft, sel)


def latent_mask(mask: np.ndarray, factor: int = LATENT_FACTOR) -> np.ndarray:
    """Downsample a processing-size mask to latent resolution (H/8 x W/8) by area averaging.

    The mask sides must be multiples of `factor` (processing sizes from `plan_inpaint` are).
    """
    m = _as_float(mask)
    h, w = m.shape
    if h % factor or w % factor:
        raise ValueError(f"mask {w}x{h} is not a multiple of {factor}")
    return cv2.resize(m, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def blend_mask(selection: np.ndarray, grow_px: int = 8, feather_px: int = 8) -> np.ndarray:
    """Alpha of the returned rectangle: zero outside the selection grown by `grow_px`, ramping up
    linearly over `feather_px` pixels inward from that edge, times the selection's own softness.
    """
    grown = grow(selection, grow_px)
    if feather_px <= 0:
        return grown
    inside = (grown > 0).astype(np.uint8)
    # Distance to the nearest pixel outside the grown selection: 1 on its border, growing inward.
    # The padded frame keeps the canvas border from counting as "outside".
    padded = cv2.copyMakeBorder(inside, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    ramp = np.clip(dist / feather_px, 0.0, 1.0)
    # A partly selected pixel (editor selection < 255) keeps its partial opacity.
    return (ramp * grown).astype(np.float32)


def to_alpha(mask: np.ndarray) -> np.ndarray:
    """Float mask -> uint8 alpha (rounded; tiny values become exactly 0)."""
    return np.clip(np.rint(_as_float(mask) * 255.0), 0, 255).astype(np.uint8)


def changed_rect(blend: np.ndarray) -> Rect:
    """Tight rectangle where the (uint8-quantised) blend alpha is > 0; empty Rect when nothing changes."""
    return mask_bbox(to_alpha(blend))
