"""Tiled VAE encode/decode for diffusers ``AutoencoderKL`` with memory bounded by the tile.

Each tile is run with ``pad`` latent px of context and cropped to its window; overlapping
windows are blended with the partition-of-unity weights, so there is no hard edge anywhere.
Every GroupNorm uses statistics shared by all tiles (see ``groupnorm``):

* ``stats="estimate"`` (default): one extra pass on the canvas downsampled to ``estimate_size``
  latent px measures the statistics; exact when the canvas already fits.
* ``stats="refine"``: additionally one full-resolution tiled pass pools exact per-layer sums over
  the tiles' own cells (using the estimated statistics for earlier layers), then the final pass.
  About 2x the cost; closest to an untiled pass.
* ``stats="per_tile"``: every tile normalises itself: the naive baseline, for tests/benchmarks.

Peak activation memory is that of one padded tile (plus the estimate pass at ``estimate_size``);
only the output tensor grows with the canvas. The VAE's mid-block attention sees one padded tile
at a time, an approximation shared by every tiled VAE. ``on_tile(rect, pixels)`` reports each
output rectangle as soon as no later tile can change it, for progressive delivery.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .geometry import Rect
from .groupnorm import GroupNormSync
from .plan import AxisLayout, TilePlan, plan_tiles
from .seams import plan_cells
from .weights import TileWeights

OnTile = Callable[[Rect, torch.Tensor], None]
STATS_MODES = ("estimate", "refine", "per_tile")


def _downsample_to(x: torch.Tensor, max_side: int, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= max_side:
        return x
    f = max_side / max(h, w)
    size = (max(multiple, round(h * f / multiple) * multiple), max(multiple, round(w * f / multiple) * multiple))
    return F.interpolate(x, size=size, mode="area")


def _final_rects(plan: TilePlan) -> list[Rect]:
    """For tile i (row-major), the region that becomes final when it is done.

    A position is final once the last tile covering it (highest row, then column) is done;
    with a product grid that region is a product of per-axis intervals.
    """

    def bounds(axis: AxisLayout) -> list[int]:
        # Tile c is the last to touch [start_c, start_{c+1}): the next tile starts there.
        return [*axis.starts, axis.length]

    bx, by = bounds(plan.xs), bounds(plan.ys)
    return [
        Rect(bx[c], by[r], bx[c + 1] - bx[c], by[r + 1] - by[r])
        for r in range(plan.ys.count)
        for c in range(plan.xs.count)
    ]


def _run_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    plan: TilePlan,
    scale_in: int,
    scale_out: int,
    pad: int,
    sync: GroupNormSync,
    out_channels: int | None,
    on_tile: OnTile | None,
) -> torch.Tensor | None:
    """One pass over all tiles. ``plan`` is in latent units; x is ``scale_in`` x latent size.

    Returns the blended output, or None in a statistics-only pass (``out_channels`` None).
    """
    cells_x, cells_y = plan_cells(plan)
    weights = TileWeights.for_plan(plan.scaled(scale_out)) if out_channels is not None else None
    finals = _final_rects(plan)
    out = None
    if out_channels is not None:
        out = torch.zeros(
            x.shape[0], out_channels, plan.height * scale_out, plan.width * scale_out, dtype=x.dtype, device=x.device
        )
    for i, tile in enumerate(plan.tiles):
        row, col = divmod(i, plan.xs.count)
        ctx = tile.padded(pad).intersection(plan.canvas)
        cell = Rect(cells_x[col], cells_y[row], cells_x[col + 1] - cells_x[col], cells_y[row + 1] - cells_y[row])
        c = cell.relative_to(ctx)
        sync.core = (c.y / ctx.h, c.x / ctx.w, c.bottom / ctx.h, c.right / ctx.w)
        inp = x[..., ctx.y * scale_in : ctx.bottom * scale_in, ctx.x * scale_in : ctx.right * scale_in]
        with torch.no_grad():
            y = fn(inp)
        if out is None or weights is None:
            continue
        t = tile.relative_to(ctx).scaled(scale_out)
        wt = weights.tile(i, y.dtype, y.device)
        dst = tile.scaled(scale_out)
        out[..., dst.y : dst.bottom, dst.x : dst.right] += y[..., t.y : t.bottom, t.x : t.right] * wt
        if on_tile is not None:
            f = finals[i].scaled(scale_out)
            on_tile(f, out[..., f.y : f.bottom, f.x : f.right])
    return out


def _tiled(
    part: nn.Module,
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    plan: TilePlan,
    scale_in: int,
    scale_out: int,
    out_channels: int,
    *,
    pad: int,
    stats: str,
    estimate_size: int,
    on_tile: OnTile | None,
) -> torch.Tensor:
    if stats not in STATS_MODES:
        raise ValueError(f"stats must be one of {STATS_MODES}")
    sync = GroupNormSync(part)
    with sync.patched():
        if stats != "per_tile":
            sync.start_collecting()
            sync.core = (0.0, 0.0, 1.0, 1.0)  # the whole downsampled canvas counts
            with torch.no_grad():
                fn(_downsample_to(x, estimate_size * scale_in, scale_in))
            sync.finish_collecting()
        if stats == "refine":
            sync.start_collecting()
            _run_tiled(fn, x, plan, scale_in, scale_out, pad, sync, None, None)
            sync.finish_collecting()
        out = _run_tiled(fn, x, plan, scale_in, scale_out, pad, sync, out_channels, on_tile)
    assert out is not None
    return out


def _check_vae(vae: nn.Module) -> None:
    for flag in ("use_tiling", "use_slicing"):
        if getattr(vae, flag, False):
            raise ValueError(f"disable diffusers' own {flag} before using tiling.vae")


def tiled_decode(
    vae: nn.Module,
    latents: torch.Tensor,
    *,
    tile: int = 64,
    overlap: int = 8,
    pad: int = 11,
    stats: str = "estimate",
    estimate_size: int = 64,
    on_tile: OnTile | None = None,
) -> torch.Tensor:
    """Decode [B, C, H, W] latents (what ``vae.decode`` takes, i.e. already unscaled) to [B, 3, 8H, 8W].

    ``tile``/``overlap``/``pad`` are in latent px; the output is in ``vae.decode``'s range ([-1, 1]).
    """
    _check_vae(vae)
    plan = plan_tiles(latents.shape[-1], latents.shape[-2], tile, overlap, multiple=1)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def fn(z: torch.Tensor) -> torch.Tensor:
        return vae.decode(z, return_dict=False)[0]

    return _tiled(
        vae.decoder, fn, latents, plan, 1, factor, vae.config.out_channels,
        pad=pad, stats=stats, estimate_size=estimate_size, on_tile=on_tile,
    )  # fmt: skip


def tiled_encode(
    vae: nn.Module,
    images: torch.Tensor,
    *,
    tile: int = 64,
    overlap: int = 8,
    pad: int = 4,
    stats: str = "estimate",
    estimate_size: int = 64,
) -> torch.Tensor:
    """Encode [B, 3, H, W] images in [-1, 1] (H, W multiples of 8) to the latent distribution mean.

    ``tile``/``overlap``/``pad`` are in latent px (x8 for pixels). Multiply by
    ``vae.config.scaling_factor`` as usual before diffusion.
    """
    _check_vae(vae)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = images.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image size {w}x{h} must be a multiple of {factor}")
    plan = plan_tiles(w // factor, h // factor, tile, overlap, multiple=1)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return vae.encode(x).latent_dist.mean

    return _tiled(
        vae.encoder, fn, images, plan, factor, 1, vae.config.latent_channels,
        pad=pad, stats=stats, estimate_size=estimate_size, on_tile=None,
    )  # fmt: skip
