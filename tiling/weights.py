"""Window weights that form an exact partition of unity over the canvas.

Each tile gets a separable window: flat 1 in its interior and at canvas edges, a raised-cosine
ramp across every overlap with a neighbour. Raised cosines are complementary
(``rc(t) + rc(1 - t) == 1``), so two tiles sharing an overlap already sum to one; we still
normalise by the per-axis sum so three-way overlaps and float rounding are exact as well.
Because the grid is a product of two axis layouts, per-axis sums of one make the 2-D sum one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .plan import AxisLayout, TilePlan


def _ramp(n: int, start: float, length: float, rising: bool) -> torch.Tensor:
    # Sample at pixel centres; values outside the ramp clamp to 0 (before) / 1 (after).
    pos = torch.arange(n, dtype=torch.float64) + 0.5
    t = ((pos - start) / length).clamp(0.0, 1.0)
    if not rising:
        t = 1.0 - t
    return 0.5 - 0.5 * torch.cos(math.pi * t)


def axis_windows(axis: AxisLayout, margin: int = 0) -> list[torch.Tensor]:
    """Normalised 1-D windows (float64, length ``axis.tile``) for every tile of ``axis``.

    ``margin`` zeroes each window for that many pixels at edges shared with a neighbour: a
    model whose output is wrong within ``margin`` of a tile border (zero padding, receptive
    field) then never contributes those pixels. The ramp uses the rest of the overlap.
    """
    starts, tile = axis.starts, axis.tile
    raw: list[torch.Tensor] = []
    for i, s in enumerate(starts):
        w = torch.ones(tile, dtype=torch.float64)
        if i > 0:  # overlap with the previous tile: [s, prev_end)
            length = starts[i - 1] + tile - s - 2 * margin
            if length <= 0:
                raise ValueError(f"overlap {starts[i - 1] + tile - s} too small for margin {margin}")
            w *= _ramp(tile, margin, length, rising=True)
        if i < len(starts) - 1:  # overlap with the next tile: [next_start, end)
            length = s + tile - starts[i + 1] - 2 * margin
            if length <= 0:
                raise ValueError(f"overlap {s + tile - starts[i + 1]} too small for margin {margin}")
            w *= _ramp(tile, starts[i + 1] - s + margin, length, rising=False)
        raw.append(w)
    total = torch.zeros(axis.length, dtype=torch.float64)
    for s, w in zip(starts, raw, strict=True):
        total[s : s + tile] += w
    if bool((total <= 0).any()):
        raise ValueError("some pixels get no weight: overlaps too small for the margin")
    return [w / total[s : s + tile] for s, w in zip(starts, raw, strict=True)]


@dataclass(frozen=True)
class TileWeights:
    """Separable per-tile weights for a plan; ``tile(i)`` materialises one 2-D window."""

    plan: TilePlan
    wx: tuple[torch.Tensor, ...]
    wy: tuple[torch.Tensor, ...]

    @classmethod
    def for_plan(cls, plan: TilePlan, margin: int = 0) -> TileWeights:
        return cls(plan, tuple(axis_windows(plan.xs, margin)), tuple(axis_windows(plan.ys, margin)))

    def tile(self, index: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        row, col = divmod(index, self.plan.xs.count)
        return torch.outer(self.wy[row], self.wx[col]).to(device=device, dtype=dtype)

    def canvas_sum(self) -> torch.Tensor:
        """Sum of all windows over the canvas (float64): 1 everywhere for a valid plan."""
        total = torch.zeros(self.plan.height, self.plan.width, dtype=torch.float64)
        for i, r in enumerate(self.plan.tiles):
            total[r.slices] += self.tile(i, torch.float64)
        return total
