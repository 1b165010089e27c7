"""Outpaint geometry and edge-aware pre-fill.

Outpainting is inpainting of a new area: the canvas is extended, the new strips are pre-filled from
the border pixels (OpenCV Telea/Navier-Stokes inpaint, then blurred, so the sampler starts from
plausible colours and structure instead of flat noise), and the job generates with a selection =
new area and a blend margin reaching into the old image. Only the new strips plus that margin are
returned; the original pixels farther than the margin from the new area are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tiling.geometry import Rect

from .geometry import mask_bbox


@dataclass(frozen=True, slots=True)
class Sides:
    """Pixels to add (or, for `touching_sides`, 1/0 flags) per canvas side."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @property
    def any(self) -> bool:
        return bool(self.left or self.top or self.right or self.bottom)

    def times(self, px: int) -> Sides:
        return Sides(self.left * px, self.top * px, self.right * px, self.bottom * px)


@dataclass(frozen=True, slots=True)
class OutpaintPlan:
    """Geometry of an extension, all in the new canvas' coordinates.

    `original` is where the old image sits; `strips` the new areas, one per extended side (corners
    belong to the left/right strips); `regions` the rectangles to return: each strip plus `margin`
    pixels into the old image, clamped to the canvas.
    """

    canvas_size: tuple[int, int]
    original: Rect
    strips: tuple[Rect, ...]
    regions: tuple[Rect, ...]
    margin: int

    def fill_mask(self) -> np.ndarray:
        """uint8 HxW, 255 on the new area: the selection the inpaint machinery generates into."""
        w, h = self.canvas_size
        m = np.full((h, w), 255, np.uint8)
        m[self.original.slices] = 0
        return m

    def blend_mask(self) -> np.ndarray:
        """float32 HxW alpha: 1 on the new area, ramping to 0 over `margin` px into the old image."""
        new = self.fill_mask()
        if self.margin <= 0:
            return (new > 0).astype(np.float32)
        # Distance (inside the old image) to the nearest new pixel.
        dist = cv2.distanceTransform((new == 0).astype(np.uint8), cv2.DIST_L2, 5)
        # Old pixels at distance 1..margin get margin/(margin+1) .. 1/(margin+1): all partial, none beyond.
        return np.clip((self.margin + 1 - dist) / (self.margin + 1), 0.0, 1.0).astype(np.float32)


def plan_outpaint(image_size: tuple[int, int], sides: Sides, margin: int = 32) -> OutpaintPlan:
    """Extend a `(w, h)` image by `sides` px; blend `margin` px into the old image."""
    if min(sides.left, sides.top, sides.right, sides.bottom) < 0:
        raise ValueError(f"outpaint extensions must be >= 0, got {sides}")
    if not sides.any:
        raise ValueError("outpaint needs at least one of left/right/top/bottom > 0")
    w, h = image_size
    nw, nh = w + sides.left + sides.right, h + sides.top + sides.bottom
    orig = Rect(sides.left, sides.top, w, h)
    strips, regions = [], []
    # Left/right strips span the full height (they own the corners); top/bottom only the old width.
    for px, strip, grow in (
        (sides.left, Rect(0, 0, sides.left, nh), (0, 0, margin, 0)),
        (sides.right, Rect(orig.right, 0, sides.right, nh), (margin, 0, 0, 0)),
        (sides.top, Rect(orig.x, 0, w, sides.top), (0, 0, 0, margin)),
        (sides.bottom, Rect(orig.x, orig.bottom, w, sides.bottom), (0, margin, 0, 0)),
    ):
        if px > 0:
            strips.append(strip)
            regions.append(strip.padded(*grow).clamped(nw, nh))
    return OutpaintPlan((nw, nh), orig, tuple(strips), tuple(regions), margin)


def extend_canvas(image: np.ndarray, plan: OutpaintPlan) -> np.ndarray:
    """The image placed on the new canvas; the new area left black (alpha 0 for RGBA) until pre-filled."""
    w, h = plan.canvas_size
    out = np.zeros((h, w, *image.shape[2:]), dtype=image.dtype)
    out[plan.original.slices] = image
    return out


def prefill(
    image: np.ndarray,
    hole: np.ndarray,
    *,
    method: str = "telea",
    radius: int = 5,
    blur_px: int = 16,
    work_size: int = 256,
) -> np.ndarray:
    """Fill the pixels where `hole` > 0 from their surroundings; the others are returned unchanged.

    Inpainting runs on a copy shrunk to `work_size` on its longer side (cv2.inpaint's cost grows with
    the hole area, and the result is blurred anyway), then the fill is scaled back, blurred by
    `blur_px` and written into the hole only. RGBA: colour is filled, alpha becomes opaque there.
    """
    img = np.asarray(image)
    hole_b = np.asarray(hole) > 0
    if not hole_b.any():
        return img.copy()
    if hole_b.all():
        raise ValueError("nothing to pre-fill from: the hole covers the whole image")
    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]
    h, w = hole_b.shape
    rgb = np.ascontiguousarray(img[..., :3])
    f = min(1.0, work_size / max(w, h))
    small_size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    # Dilate the small hole a little: area-averaged border pixels are contaminated by the black fill.
    small_hole = cv2.resize(hole_b.astype(np.uint8) * 255, small_size, interpolation=cv2.INTER_AREA) > 0
    small_hole = cv2.dilate(small_hole.astype(np.uint8), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_hole, max(1, round(radius * f)), flag)
    filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    # Known pixels back in before blurring so the blur pulls the fill towards the real border colours.
    filled[~hole_b] = rgb[~hole_b]
    if blur_px > 0:
        filled = cv2.GaussianBlur(filled, (0, 0), sigmaX=blur_px / 2, borderType=cv2.BORDER_REPLICATE)
    out = img.copy()
    out[..., :3][hole_b] = filled[hole_b]
    if img.ndim == 3 and img.shape[2] == 4:
        out[..., 3][hole_b] = 255
    return out


def touching_sides(selection: np.ndarray, threshold: int = 0) -> Sides:
    """Which canvas edges a selection touches (flags 0/1): an outpaint request when the user says so."""
    sel = mask_bbox(selection, threshold)
    if sel.is_empty:
        return Sides()
    h, w = np.asarray(selection).shape[:2]
    return Sides(int(sel.x == 0), int(sel.y == 0), int(sel.right == w), int(sel.bottom == h))


def transparent_hole(image: np.ndarray, selection: np.ndarray | None = None, threshold: int = 0) -> np.ndarray:
    """uint8 mask (255) of transparent pixels (alpha <= threshold) to pre-fill, limited to `selection`.

    This is the in-canvas form of outpainting: the user enlarged the canvas in the editor and selected
    the empty area. RGB images have no transparent area (all-zero mask).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 4:
        return np.zeros(img.shape[:2], np.uint8)
    hole = img[..., 3] <= threshold
    if selection is not None:
        hole &= np.asarray(selection) > 0
    return hole.astype(np.uint8) * 255
