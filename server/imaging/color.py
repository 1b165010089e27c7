"""Colour match of a generated crop to the original around the selection.

Diffusion models (and the VAE round trip) shift colour and contrast slightly; pasted back, the patch
shows as a tinted blob. Both images are measured on a ring just outside the selection, where the
generated crop should equal the original; the generated crop's per-channel mean/std in CIELAB is
then moved onto the original's there. A global affine per channel: it cannot add structure, only
remove the drift.
"""

from __future__ import annotations

import cv2
import numpy as np

from .masks import grow

_MIN_RING_PIXELS = 16


def ring_mask(selection: np.ndarray, inner: int = 4, outer: int = 32) -> np.ndarray:
    """bool HxW: pixels farther than `inner` and at most `outer` px from the selection (> 0)."""
    sel = (np.asarray(selection) > 0).astype(np.uint8)
    return (grow(sel, outer) > 0) & ~(grow(sel, inner) > 0)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb[..., :3].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def match_color(
    generated: np.ndarray,
    reference: np.ndarray,
    selection: np.ndarray,
    *,
    inner: int = 4,
    outer: int = 32,
    strength: float = 1.0,
    max_ratio: float = 2.0,
) -> np.ndarray:
    """`generated` (RGB uint8) with its colour statistics matched to `reference` (same size) on the
    ring around `selection`. `strength` in [0, 1] blends towards the matched colours; the contrast
    ratio is clamped to [1/max_ratio, max_ratio] so a flat ring cannot blow the patch up.

    When the ring is empty (selection covers the crop) it falls back to all unselected pixels, and
    when there are none, `generated` is returned unchanged: there is nothing to match against.
    """
    gen = np.asarray(generated)
    ref = np.asarray(reference)
    if gen.shape[:2] != ref.shape[:2] or gen.shape[:2] != np.asarray(selection).shape[:2]:
        raise ValueError(f"size mismatch: generated {gen.shape}, reference {ref.shape}, selection {selection.shape}")
    region = ring_mask(selection, inner, outer)
    if region.sum() < _MIN_RING_PIXELS:
        region = np.asarray(selection) == 0
    if region.sum() < _MIN_RING_PIXELS or strength <= 0:
        return gen.copy()
    g, r = _lab(gen), _lab(ref)
    gm, gs = g[region].mean(axis=0), g[region].std(axis=0)
    rm, rs = r[region].mean(axis=0), r[region].std(axis=0)
    ratio = np.clip(rs / np.maximum(gs, 1e-3), 1 / max_ratio, max_ratio)
    matched = (g - gm) * ratio + rm
    out_lab = g + (matched - g) * min(strength, 1.0)
    out = cv2.cvtColor(out_lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    rgb = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    if gen.ndim == 3 and gen.shape[2] == 4:
        rgb = np.dstack([rgb, gen[..., 3]])
    return rgb
