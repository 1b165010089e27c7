"""Tile planning: uniform, exact-fit tile layouts over a canvas (all units are latent pixels).

Every tile has the same shape so a batch of tiles is one static-shape tensor (batchable and
compilable). The planner spreads tiles evenly, so the last tile is never a thin sliver, and it
prefers one tile fewer per axis when that only grows the tile a little (the "cost cliff": a canvas
exactly k tiles wide would otherwise need k+1 tiles per axis as soon as any overlap is asked for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

from ._keys import key64
from .geometry import Rect, ceil_to
from .steps import steps_run


@dataclass(frozen=True)
class AxisLayout:
    """Tile windows along one axis: ``[start, start + tile)`` for each start, covering ``[0, length)``."""

    length: int
    tile: int
    starts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.starts or self.starts[0] != 0 or self.starts[-1] + self.tile != self.length:
            raise ValueError(f"layout does not cover [0, {self.length}): {self}")
        if any(b <= a or b > a + self.tile for a, b in zip(self.starts, self.starts[1:], strict=False)):
            raise ValueError(f"tiles must be increasing and leave no gap: {self}")

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def overlaps(self) -> tuple[int, ...]:
        """Overlap of each neighbouring pair (``count - 1`` values)."""
        return tuple(a + self.tile - b for a, b in zip(self.starts, self.starts[1:], strict=False))

    def scaled(self, factor: int) -> AxisLayout:
        return AxisLayout(self.length * factor, self.tile * factor, tuple(s * factor for s in self.starts))


def plan_axis(length: int, tile: int, overlap: int, *, multiple: int = 8, slack: float = 0.12) -> AxisLayout:
    """Fewest evenly spread tiles of one size covering ``length`` with at least ``overlap`` between neighbours.

    ``tile`` is the nominal size; the result may be smaller (exact fit), or up to ``slack`` larger
    when that saves a whole row or column of tiles. Sizes are rounded up to ``multiple`` (what the
    UNet needs); a canvas that fits in one tile gets one tile of the canvas size.
    """
    if length <= 0 or tile <= 0:
        raise ValueError("length and tile must be positive")
    if not 0 <= overlap < tile:
        raise ValueError("need 0 <= overlap < tile")
    if length <= tile:
        return AxisLayout(length, length, (0,))
    n = math.ceil((length - overlap) / (tile - overlap))
    if n > 1 and math.ceil((length + (n - 2) * overlap) / (n - 1)) <= tile * (1 + slack):
        n -= 1
    size = min(length, ceil_to(math.ceil((length + (n - 1) * overlap) / n), multiple))
    if n == 1 or size == length:
        return AxisLayout(length, length, (0,))
    starts = tuple(round(i * (length - size) / (n - 1)) for i in range(n))
    return AxisLayout(length, size, starts)


def overlap_for_strength(tile: int, strength: float, *, base: float = 1 / 16, per_strength: float = 1 / 4) -> int:
    """Overlap (even, latent px) growing with denoising strength.

    Low strength keeps tiles close to the shared input, so little overlap hides the seams; high
    strength lets tiles wander apart and needs a wider blend band.
    """
    frac = base + per_strength * min(max(strength, 0.0), 1.0)
    return max(2, min(tile // 2, ceil_to(round(tile * frac), 2)))


@dataclass(frozen=True)
class TilePlan:
    """A product grid of uniform tiles: rows from ``ys`` times columns from ``xs``."""

    xs: AxisLayout
    ys: AxisLayout

    @property
    def width(self) -> int:
        return self.xs.length

    @property
    def height(self) -> int:
        return self.ys.length

    @property
    def tile_w(self) -> int:
        return self.xs.tile

    @property
    def tile_h(self) -> int:
        return self.ys.tile

    @property
    def canvas(self) -> Rect:
        return Rect(0, 0, self.width, self.height)

    @cached_property
    def tiles(self) -> tuple[Rect, ...]:
        """Row-major tile rectangles; tile ``i`` is at grid cell ``divmod(i, xs.count)``."""
        return tuple(Rect(x, y, self.xs.tile, self.ys.tile) for y in self.ys.starts for x in self.xs.starts)

    def __len__(self) -> int:
        return self.xs.count * self.ys.count

    def scaled(self, factor: int) -> TilePlan:
        """The same layout in units ``factor`` times smaller (e.g. latent -> pixels with 8)."""
        return TilePlan(self.xs.scaled(factor), self.ys.scaled(factor))

    def jittered(self, seed: int, step: int, *, max_shift: int | None = None, min_overlap: int = 2) -> TilePlan:
        """This plan with interior tiles shifted by a per-step offset, deterministic in (seed, step).

        Moving the seams every step spreads residual seam error instead of stacking it in one
        place (a free version of a "half-tile offset" pass). Windows never wrap or leave the
        canvas: the first and last tile stay at the canvas edges and all interior tiles of an
        axis move together, so overlaps stay >= ``min_overlap``. Axes with fewer than three
        tiles have nothing to move.
        """
        return replace(
            self,
            xs=_jitter_axis(self.xs, key64(seed, step, 0), max_shift, min_overlap),
            ys=_jitter_axis(self.ys, key64(seed, step, 1), max_shift, min_overlap),
        )


def _jitter_axis(axis: AxisLayout, key: int, max_shift: int | None, min_overlap: int) -> AxisLayout:
    if axis.count < 3:
        return axis
    first, last = axis.overlaps[0], axis.overlaps[-1]
    # Shifting right by d shrinks the first overlap and grows the last one.
    lo, hi = -(last - min_overlap), first - min_overlap
    # Keep starts strictly increasing even when overlaps exceed half a tile.
    lo, hi = max(lo, 1 - axis.starts[1]), min(hi, axis.starts[-1] - axis.starts[-2] - 1)
    if max_shift is not None:
        lo, hi = max(lo, -max_shift), min(hi, max_shift)
    if hi < lo:
        return axis
    d = lo + key % (hi - lo + 1)
    starts = (0, *(s + d for s in axis.starts[1:-1]), axis.starts[-1])
    return replace(axis, starts=starts)


def plan_tiles(
    width: int,
    height: int,
    tile: int,
    overlap: int,
    *,
    multiple: int = 8,
    slack: float = 0.12,
) -> TilePlan:
    """Plan a ``width`` x ``height`` canvas (latent px) with square nominal tiles."""
    return TilePlan(
        plan_axis(width, tile, overlap, multiple=multiple, slack=slack),
        plan_axis(height, tile, overlap, multiple=multiple, slack=slack),
    )


def unet_evaluations(
    plan: TilePlan, steps: int, strength: float = 1.0, *, cfg: bool = False, tiles: int | None = None
) -> int:
    """Tile-sized UNet evaluations for a job (``tiles`` overrides the count, e.g. after culling)."""
    n = len(plan) if tiles is None else tiles
    return n * steps_run(steps, strength) * (2 if cfg else 1)


def usdu_evaluations(width_px: int, height_px: int, steps: int, strength: float, *, tile_px: int = 512) -> float:
    """The Ultimate-SD-Upscale redraw cost ``ceil(W/tile) * ceil(H/tile) * steps * strength`` (no seam fix)."""
    return math.ceil(width_px / tile_px) * math.ceil(height_px / tile_px) * steps * strength
