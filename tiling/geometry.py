"""The one rectangle type of sdbridge: server, tiling package and editor plugins share this file.

Pure Python on purpose (standard library only): the Krita and GIMP plugins vendor this very file
as `_geometry.py` (see `plugins/build.py`), the way they vendor `server/protocol.py`, so there is
one definition in the source tree and the editors run it without numpy or torch.

Conventions:

- Integer pixels, x to the right, y down; half-open: columns ``[x, right)``, rows ``[y, bottom)``.
- ``w`` and ``h`` are never negative. A rectangle with ``w == 0`` or ``h == 0`` is empty (what a
  disjoint intersection returns); the position of an empty rectangle means nothing.
- Every operation returns a new rectangle and is named for its result: ``shifted``, ``scaled``,
  ``padded``, ``clamped``, ``intersection``, ``relative_to``.
- One rounding rule: where a coordinate stops being an integer (``scaled`` by a fraction), the
  rectangle rounds *outward* (floor of the left/top edge, ceiling of the right/bottom edge), so
  the result covers every pixel the exact rectangle touches. Integer factors are exact. Sizes
  snapped to a multiple (the latent factor 8) use ``ceil_to``/``floor_to``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def ceil_to(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


def floor_to(value: int, multiple: int) -> int:
    """Largest multiple of ``multiple`` that is <= ``value``."""
    return value // multiple * multiple


@dataclass(frozen=True, slots=True)
class Rect:
    """Axis-aligned integer rectangle: columns ``[x, x + w)``, rows ``[y, y + h)``."""

    x: int
    y: int
    w: int
    h: int

    def __post_init__(self) -> None:
        if self.w < 0 or self.h < 0:
            raise ValueError(f"negative size: {self}")

    @classmethod
    def from_bounds(cls, x0: int, y0: int, x1: int, y1: int) -> Rect:
        """The rectangle ``[x0, x1) x [y0, y1)``; a reversed edge pair gives size 0 (empty)."""
        return cls(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    @property
    def right(self) -> int:
        """First column past the rectangle."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """First row past the rectangle."""
        return self.y + self.h

    @property
    def area(self) -> int:
        return self.w * self.h

    @property
    def is_empty(self) -> bool:
        return self.w == 0 or self.h == 0

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)``: index the first two dims of an HxW(xC) array, ``img[r.slices]``, or the
        last two of a tensor, ``x[..., rows, cols]``."""
        return slice(self.y, self.bottom), slice(self.x, self.right)

    def shifted(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.w, self.h)

    def scaled(self, factor: float) -> Rect:
        """Every coordinate times ``factor``, rounded outward (exact for integer factors)."""
        if isinstance(factor, int):
            return Rect(self.x * factor, self.y * factor, self.w * factor, self.h * factor)
        return Rect.from_bounds(
            math.floor(self.x * factor),
            math.floor(self.y * factor),
            math.ceil(self.right * factor),
            math.ceil(self.bottom * factor),
        )

    def padded(self, left: int, top: int | None = None, right: int | None = None, bottom: int | None = None) -> Rect:
        """``padded(n)``: grow by ``n`` on every side; ``padded(l, t, r, b)``: per side (right and bottom
        default to left and top). Negative values shrink, down to an empty rectangle."""
        top = left if top is None else top
        right = left if right is None else right
        bottom = top if bottom is None else bottom
        return Rect.from_bounds(self.x - left, self.y - top, self.right + right, self.bottom + bottom)

    def intersection(self, other: Rect) -> Rect:
        """The overlap of both rectangles (empty when they do not overlap)."""
        return Rect.from_bounds(
            max(self.x, other.x), max(self.y, other.y), min(self.right, other.right), min(self.bottom, other.bottom)
        )

    def clamped(self, width: int, height: int) -> Rect:
        """The part inside the canvas ``(0, 0, width, height)``."""
        return self.intersection(Rect(0, 0, width, height))

    def relative_to(self, origin: Rect) -> Rect:
        """This rectangle in the coordinate frame whose (0, 0) is ``origin``'s corner."""
        return self.shifted(-origin.x, -origin.y)

    def contains(self, other: Rect) -> bool:
        return self.x <= other.x and self.y <= other.y and other.right <= self.right and other.bottom <= self.bottom
