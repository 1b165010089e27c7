"""Immutable integer rectangles shared by every tiling module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Rect:
    """Axis-aligned integer rectangle: columns ``[x, x + w)``, rows ``[y, y + h)``."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if self.w < 0 or self.h < 0:
            raise ValueError(f"negative size: {self}")

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices, for indexing the last two dims of an array."""
        return slice(self.y, self.y1), slice(self.x, self.x1)

    def scaled(self, factor: int) -> Rect:
        return Rect(self.x * factor, self.y * factor, self.w * factor, self.h * factor)

    def shifted(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def padded(self, pad: int, bounds: Rect) -> Rect:
        """Grow by ``pad`` on every side, clamped to ``bounds``."""
        x0, y0 = max(bounds.x, self.x - pad), max(bounds.y, self.y - pad)
        x1, y1 = min(bounds.x1, self.x1 + pad), min(bounds.y1, self.y1 + pad)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def intersection(self, other: Rect) -> Rect | None:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        if x1 <= x0 or y1 <= y0:
            return None
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def relative_to(self, origin: Rect) -> Rect:
        """This rectangle in the coordinate frame whose (0, 0) is ``origin``'s corner."""
        return Rect(self.x - origin.x, self.y - origin.y, self.w, self.h)

    def contains(self, other: Rect) -> bool:
        return self.x <= other.x and self.y <= other.y and other.x1 <= self.x1 and other.y1 <= self.y1
