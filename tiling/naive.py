"""The naive reference tiler peers ship: independent tiles, hard-pasted. For tests and benchmarks only."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .geometry import Rect
from .plan import TilePlan
from .seams import plan_cells


def naive_paste(image: torch.Tensor, fn: Callable[[torch.Tensor, Rect], torch.Tensor], plan: TilePlan) -> torch.Tensor:
    """Run ``fn`` on every tile of ``image`` [B, C, H, W] on its own and paste the cell each tile owns.

    Tiles never see each other: whatever a tile does differently near its border (padding,
    normalisation statistics, its own noise) ends up as a hard seam at the cell boundary.
    """
    bx, by = plan_cells(plan)
    out: torch.Tensor | None = None
    for i, tile in enumerate(plan.tiles):
        row, col = divmod(i, plan.xs.count)
        result = fn(image[:, :, tile.y : tile.bottom, tile.x : tile.right], tile)
        if out is None:
            out = torch.zeros(image.shape[0], result.shape[1], plan.height, plan.width, dtype=result.dtype)
        cell = Rect(bx[col], by[row], bx[col + 1] - bx[col], by[row + 1] - by[row])
        src = cell.relative_to(tile)
        out[:, :, cell.y : cell.bottom, cell.x : cell.right] = result[:, :, src.y : src.bottom, src.x : src.right]
    assert out is not None
    return out
