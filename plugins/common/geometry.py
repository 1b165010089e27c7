"""Canvas geometry for editor adapters: a small immutable Rect and selection/outpaint helpers.

Pure Python on purpose (no numpy): it runs inside Krita's and GIMP's embedded interpreters.
Rectangles are half-open pixel boxes in canvas coordinates, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Side = Literal["left", "right", "top", "bottom"]
SIDES: tuple[Side, ...] = ("left", "right", "top", "bottom")


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @classmethod
    def from_bounds(cls, x0: int, y0: int, x1: int, y1: int) -> Rect:
        return cls(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Rect:
        """Rect of a result image (`{x, y, w, h}`; w/h may be absent for encoded images)."""
        return cls(int(obj.get("x", 0)), int(obj.get("y", 0)), int(obj.get("w") or 0), int(obj.get("h") or 0))

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def empty(self) -> bool:
        return self.w <= 0 or self.h <= 0

    def intersect(self, other: Rect) -> Rect:
        return Rect.from_bounds(
            max(self.x, other.x), max(self.y, other.y), min(self.right, other.right), min(self.bottom, other.bottom)
        )

    def union(self, other: Rect) -> Rect:
        if self.empty:
            return other
        if other.empty:
            return self
        return Rect.from_bounds(
            min(self.x, other.x), min(self.y, other.y), max(self.right, other.right), max(self.bottom, other.bottom)
        )

    def pad(self, n: int) -> Rect:
        return Rect(self.x - n, self.y - n, self.w + 2 * n, self.h + 2 * n)

    def translate(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def scale(self, factor: float) -> Rect:
        return Rect.from_bounds(
            int(self.x * factor), int(self.y * factor), round(self.right * factor), round(self.bottom * factor)
        )

    def contains(self, px: int, py: int) -> bool:
        return self.x <= px < self.right and self.y <= py < self.bottom

    def to_wire(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}


def mask_bounds(mask: bytes, w: int, h: int, threshold: int = 0) -> Rect:
    """Bounding box of mask bytes (gray8, row-major) above `threshold`; empty Rect when none."""
    if len(mask) != w * h:
        raise ValueError(f"mask of {len(mask)} bytes does not match {w}x{h}")
    # Per-row scans with bytes methods keep this fast enough in pure Python for 4k masks.
    table = bytes(255 if v > threshold else 0 for v in range(256))
    binary = mask.translate(table)
    rows = [y for y in range(h) if binary.find(b"\xff", y * w, (y + 1) * w) >= 0]
    if not rows:
        return Rect(0, 0, 0, 0)
    x0, x1 = w, 0
    for y in rows:
        row = binary[y * w : (y + 1) * w]
        x0 = min(x0, row.find(b"\xff"))
        x1 = max(x1, row.rfind(b"\xff") + 1)
    return Rect.from_bounds(x0, rows[0], x1, rows[-1] + 1)


def crop_gray(mask: bytes, w: int, rect: Rect) -> bytes:
    """Cut `rect` out of a gray8 image that is `w` pixels wide (rect must lie inside)."""
    return b"".join(mask[(rect.y + r) * w + rect.x : (rect.y + r) * w + rect.right] for r in range(rect.h))


def touching_sides(sel: Rect, canvas_w: int, canvas_h: int, tolerance: int = 2) -> list[Side]:
    """Canvas edges a selection touches (within `tolerance` px): outpaint candidates."""
    sides: list[Side] = []
    if sel.x <= tolerance:
        sides.append("left")
    if sel.right >= canvas_w - tolerance:
        sides.append("right")
    if sel.y <= tolerance:
        sides.append("top")
    if sel.bottom >= canvas_h - tolerance:
        sides.append("bottom")
    return sides


def outpaint_side(sel: Rect, canvas_w: int, canvas_h: int, tolerance: int = 2) -> Side | None:
    """The single side to extend for a selection at the canvas edge, or None when ambiguous.

    A selection spanning the full canvas in one axis and touching one end of the other axis is the
    clear case ("extend to the right"); a selection touching exactly one side is accepted too.
    """
    sides = touching_sides(sel, canvas_w, canvas_h, tolerance)
    if len(sides) == 1:
        return sides[0]
    if len(sides) == 3:
        # e.g. top+bottom+right: the odd one out of the spanned axis is the side to extend
        spans_vertically = "top" in sides and "bottom" in sides
        rest = [s for s in sides if s not in (("top", "bottom") if spans_vertically else ("left", "right"))]
        return rest[0] if len(rest) == 1 else None
    return None


def extend_amounts(side: Side, pixels: int) -> dict[str, int]:
    """Per-side extension map for an outpaint job extending `side` by `pixels`."""
    return {s: (pixels if s == side else 0) for s in SIDES}


def extended_canvas(canvas_w: int, canvas_h: int, extend: dict[str, int]) -> tuple[Rect, int, int]:
    """Where the old canvas lies inside the extended one, and the new canvas size."""
    left, right = extend.get("left", 0), extend.get("right", 0)
    top, bottom = extend.get("top", 0), extend.get("bottom", 0)
    return Rect(left, top, canvas_w, canvas_h), canvas_w + left + right, canvas_h + top + bottom


def snap(value: int, multiple: int = 8, lo: int | None = None) -> int:
    """Round to the nearest multiple (models want sizes divisible by 8), at least `lo` or `multiple`."""
    v = max(multiple, int(value / multiple + 0.5) * multiple)  # half rounds up, not to even
    return max(v, lo) if lo is not None else v


def fit_size(w: int, h: int, max_pixels: int, multiple: int = 8) -> tuple[int, int]:
    """Scale (w, h) down to at most `max_pixels`, keeping aspect and snapping to `multiple`."""
    if w * h > max_pixels:
        f = (max_pixels / (w * h)) ** 0.5
        w, h = int(w * f), int(h * f)
    return max(multiple, w // multiple * multiple), max(multiple, h // multiple * multiple)
