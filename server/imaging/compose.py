"""The result of an editing job: only the changed rectangle, RGBA, alpha = blend mask.

`composite` is what an editor does with it (a layer at (x, y) over the original); the server uses it
to write the full image for the CLI's `--out`. Integer maths so alpha 0 keeps the original exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiling.geometry import Rect

from .masks import changed_rect, to_alpha


@dataclass(frozen=True, slots=True)
class Patch:
    """An RGBA uint8 image meant to be placed at `rect` (same size) over the original."""

    rect: Rect
    rgba: np.ndarray


def make_patch(result: np.ndarray, blend: np.ndarray, origin: Rect | None = None) -> Patch | None:
    """Cut the changed rectangle out of a full-size `result` (RGB uint8) with `blend` (float) as alpha.

    `origin` is where `result`/`blend` sit on the canvas (default: at 0, 0). None when nothing changes.
    """
    alpha = to_alpha(blend)
    local = changed_rect(alpha)
    if local.is_empty:
        return None
    rgb = np.asarray(result)[local.slices][..., :3]
    rgba = np.dstack([rgb, alpha[local.slices]]).astype(np.uint8)
    at = local if origin is None else local.shifted(origin.x, origin.y)
    return Patch(at, rgba)


def region_patches(result: np.ndarray, blend: np.ndarray, regions: Sequence[Rect]) -> list[Patch]:
    """One patch per region of a full-size `result` (alpha = `blend`); a pixel already covered by an
    earlier region gets alpha 0 in later ones, so overlapping patches composite exactly like one blend
    would. Without regions: the one changed rectangle (`make_patch`), or nothing."""
    if not regions:
        patch = make_patch(result, blend)
        return [] if patch is None else [patch]
    alpha = to_alpha(blend)
    claimed = np.zeros(alpha.shape, bool)
    patches = []
    for r in regions:
        a = np.where(claimed[r.slices], 0, alpha[r.slices]).astype(np.uint8)
        claimed[r.slices] = True
        patches.append(Patch(r, np.dstack([result[r.slices], a])))
    return patches


def composite(base: np.ndarray, patch: Patch) -> np.ndarray:
    """`patch` over `base` (RGB or RGBA uint8); pixels with alpha 0 stay bit-identical."""
    out = np.array(base, copy=True)
    region = patch.rect.clamped(out.shape[1], out.shape[0])
    if region.is_empty:
        return out
    src = patch.rgba[region.relative_to(patch.rect).slices]
    dst = out[region.slices]
    a = src[..., 3:4].astype(np.uint16)
    mixed = (src[..., :3].astype(np.uint16) * a + dst[..., :3].astype(np.uint16) * (255 - a) + 127) // 255
    dst[..., :3] = mixed.astype(np.uint8)
    if dst.shape[-1] == 4:
        # Source-over for the base's own alpha, same rounding.
        da = dst[..., 3:4].astype(np.uint16)
        dst[..., 3:4] = (a * 255 + da * (255 - a) + 127) // 255
    return out
