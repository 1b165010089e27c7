"""Selection culling: evaluate only the tiles that touch a (dilated) selection mask.

The blend region is the dilated mask. Every latent inside it is covered only by tiles that touch
the mask, so the fused output there is fully weighted; outside it the caller keeps the original
values untouched (``keep_outside``), which makes unselected latents and pixels bit-exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .plan import TilePlan


def _as_2d(mask: torch.Tensor) -> torch.Tensor:
    # Accept [H, W], [1, H, W] or [B, 1, H, W]; a batch selects the union of its masks.
    m = mask.detach()
    while m.dim() > 2:
        m = m.amax(dim=0)
    return m > 0


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean square dilation of a 2-D mask by ``radius`` pixels (Chebyshev distance)."""
    m = _as_2d(mask)
    if radius <= 0:
        return m
    pooled = F.max_pool2d(m[None, None].float(), kernel_size=2 * radius + 1, stride=1, padding=radius)
    return pooled[0, 0] > 0


def blend_region(plan: TilePlan, mask: torch.Tensor, radius: int = 0) -> torch.Tensor:
    """Boolean [H, W] region whose latents the fused output may replace (the dilated mask)."""
    region = dilate(mask, radius)
    if tuple(region.shape) != (plan.height, plan.width):
        raise ValueError(f"mask {tuple(region.shape)} does not match plan {(plan.height, plan.width)}")
    return region


def select_tiles(plan: TilePlan, mask: torch.Tensor, radius: int = 0) -> tuple[int, ...]:
    """Indices of the tiles touching the dilated mask (row-major plan order)."""
    region = blend_region(plan, mask, radius)
    return tuple(i for i, r in enumerate(plan.tiles) if bool(region[r.slices].any()))


def keep_outside(original: torch.Tensor, updated: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``updated`` inside ``region`` and the untouched ``original`` values everywhere else."""
    return torch.where(region.to(updated.device), updated, original)
