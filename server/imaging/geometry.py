"""Inpaint geometry: the context crop around a selection and the resolution it is processed at.

Coordinates are pixels, x to the right, y down; a `Rect` is half-open (`x <= px < x + w`).

Non-multiple-of-8 canvases: the crop always lies inside the canvas. It is grown to a multiple of 8
where the canvas allows it, otherwise shrunk to the largest multiple of 8 that still holds the whole
selection, and only when neither fits (the selection spans the canvas in that axis) it is the full
canvas extent plus `pad` pixels on the right/bottom, filled by edge replication in `extract_crop`
and dropped again in `restore_crop`. So the model always sees sizes that are multiples of 8 and the
job never writes outside the canvas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from tiling.geometry import Rect, ceil_to, floor_to

LATENT_FACTOR = 8


class MaskError(ValueError):
    """A selection mask that cannot be used (wrong shape or dtype)."""


class EmptyMaskError(MaskError):
    """The selection mask selects nothing: there is nothing to inpaint."""


def mask_bbox(mask: np.ndarray, threshold: int = 0) -> Rect:
    """Tight rectangle of the pixels with `mask > threshold` (an empty Rect when there are none)."""
    ys, xs = np.nonzero(np.asarray(mask) > threshold)
    if len(xs) == 0:
        return Rect(0, 0, 0, 0)
    return Rect.from_bounds(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def check_mask(mask: np.ndarray, canvas_size: tuple[int, int]) -> np.ndarray:
    """Validate an editor selection (uint8 HxW, 0-255) against the canvas `(width, height)`."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    w, h = canvas_size
    if mask.ndim != 2:
        raise MaskError(f"mask must be a single-channel HxW image, got shape {mask.shape}")
    if mask.shape != (h, w):
        raise MaskError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
    if mask.dtype != np.uint8:
        raise MaskError(f"mask must be uint8 0-255, got {mask.dtype}")
    return mask


def _fit_axis(
    start: int, length: int, sel_start: int, sel_end: int, canvas: int, multiple: int
) -> tuple[int, int, int]:
    """One axis of the crop: (start, length, pad) with length+pad a multiple of `multiple`, inside the canvas."""
    up = ceil_to(length, multiple)
    if up <= canvas:
        start -= (up - length) // 2
        return min(max(start, 0), canvas - up), up, 0
    down = floor_to(canvas, multiple)
    if down >= sel_end - sel_start and down > 0:
        # Shrink to the largest multiple that still holds the selection, centred on it where possible.
        centre = (sel_start + sel_end) // 2
        s = min(max(centre - down // 2, 0), canvas - down)
        s = min(max(s, sel_end - down), sel_start)
        return s, down, 0
    return 0, canvas, ceil_to(canvas, multiple) - canvas


@dataclass(frozen=True, slots=True)
class InpaintPlan:
    """Where to crop, and at which size the crop is generated.

    `crop` is inside the canvas; `pad` = (right, bottom) edge-replicated pixels appended to reach a
    multiple of 8; `process_size` = (w, h) the model works at (multiples of 8); `scale` is
    process / (crop + pad) (> 1: a small selection is generated at a higher "detail" resolution).
    """

    canvas_size: tuple[int, int]
    selection: Rect
    crop: Rect
    pad: tuple[int, int]
    process_size: tuple[int, int]
    scale: float

    @property
    def padded_size(self) -> tuple[int, int]:
        return self.crop.w + self.pad[0], self.crop.h + self.pad[1]

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.process_size[0] // LATENT_FACTOR, self.process_size[1] // LATENT_FACTOR


def context_padding(selection: Rect, ratio: float = 0.5, minimum: int = 16) -> int:
    """Context around a selection: grows with the selection (half its mean side), at least `minimum`."""
    return max(minimum, round(ratio * (selection.w + selection.h) / 2))


def plan_inpaint(
    canvas_size: tuple[int, int],
    mask: np.ndarray,
    target: int = 512,
    *,
    max_upscale: float = 4.0,
    max_pixels: int | None = None,
    allow_downscale: bool = False,
    padding_ratio: float = 0.5,
    min_padding: int = 16,
    multiple: int = LATENT_FACTOR,
) -> InpaintPlan:
    """Context crop + detail resolution for a soft selection `mask` (uint8 HxW) on a `(w, h)` canvas.

    `target` is the model's native resolution (512 SD1.5, 1024 SDXL, 64 tiny): a crop smaller than
    target² pixels is scaled up towards it (at most `max_upscale`, so a 1-px selection is not blown up
    64x). Larger crops stay at 1:1 unless `allow_downscale`. `max_pixels` (default 4 * target²) caps the
    processing size; above it the crop is scaled down (each side stays at least `multiple`, so only a
    sliver thinner than 8 px at the capped scale could exceed the cap). Raises `EmptyMaskError` for
    an empty selection.
    """
    w, h = canvas_size
    mask = check_mask(mask, canvas_size)
    sel = mask_bbox(mask)
    if sel.is_empty:
        raise EmptyMaskError("the selection mask is empty (all zero): select the area to inpaint")
    pad_px = context_padding(sel, padding_ratio, min_padding)
    ctx = sel.padded(pad_px).clamped(w, h)
    x, cw, pad_r = _fit_axis(ctx.x, ctx.w, sel.x, sel.right, w, multiple)
    y, ch, pad_b = _fit_axis(ctx.y, ctx.h, sel.y, sel.bottom, h, multiple)
    crop = Rect(x, y, cw, ch)
    pw, ph = cw + pad_r, ch + pad_b

    native = target / math.sqrt(pw * ph)
    scale = min(native, max_upscale) if native > 1 or allow_downscale else 1.0
    limit = max_pixels if max_pixels is not None else 4 * target * target
    capped = pw * ph * scale * scale > limit
    if capped:
        scale = math.sqrt(limit / (pw * ph))

    def axis(v: int, floor: bool) -> int:
        if scale == 1.0:
            return v
        return max(multiple, floor_to(int(v * scale), multiple) if floor else round(v * scale / multiple) * multiple)

    # Capped: both sides round down, so the cap holds after rounding. Otherwise the nearest multiples,
    # and down after all if those break the cap. Decided by which branch set the scale and on the
    # integer sizes, never by comparing the float scale with the cap again (225x81 at target 64 once
    # came out 208x80 > 4·64²: the capped scale compared an ulp under the cap).
    size = (axis(pw, False), axis(ph, False))
    if capped or size[0] * size[1] > limit:
        size = (axis(pw, True), axis(ph, True))
    return InpaintPlan((w, h), sel, crop, (pad_r, pad_b), size, scale)


def extract_crop(image: np.ndarray, plan: InpaintPlan, interpolation: int | None = None) -> np.ndarray:
    """The crop of `image` (HxW or HxWxC) at the processing size, edge-replicated where `plan.pad` says."""
    part = image[plan.crop.slices]
    if plan.pad != (0, 0):
        part = cv2.copyMakeBorder(part, 0, plan.pad[1], 0, plan.pad[0], cv2.BORDER_REPLICATE)
    return _resize(part, plan.process_size, interpolation)


def restore_crop(result: np.ndarray, plan: InpaintPlan, interpolation: int | None = None) -> np.ndarray:
    """A processing-size result scaled back to the crop's size (pad dropped): place at `plan.crop`."""
    part = _resize(result, plan.padded_size, interpolation)
    return part[: plan.crop.h, : plan.crop.w]


def _resize(img: np.ndarray, size: tuple[int, int], interpolation: int | None) -> np.ndarray:
    if (img.shape[1], img.shape[0]) == size:
        return img.copy()
    if interpolation is None:
        # Area averaging when shrinking avoids aliasing; Lanczos keeps edges when enlarging.
        interpolation = cv2.INTER_AREA if size[0] < img.shape[1] else cv2.INTER_LANCZOS4
    out = cv2.resize(img, size, interpolation=interpolation)
    if img.dtype.kind == "f":
        out = np.clip(out, img.min(), img.max())  # Lanczos overshoots; a soft mask must stay in range
    return out.reshape(size[1], size[0], *img.shape[2:])
