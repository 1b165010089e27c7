"""Fused tiled denoising at the model-output level.

``fused_model_output`` replaces one UNet call on the whole canvas: it cuts the latents into the
plan's tiles, calls ``model_fn`` on batches of same-shape tiles, and blends the per-tile outputs
(eps, v or x0) with the plan's partition-of-unity windows. The caller then takes ONE
``scheduler.step`` on the whole canvas, so multistep samplers (DPM++ 2M, UniPC) keep a single,
consistent history, and tiles agree at every step instead of being stitched at the end.

Differences from the brief's signature, all additive: ``model_fn`` receives ``TileRef`` objects
(a ``Rect`` subclass that also carries the batch index, for per-sample conditioning);
``region_weights`` is the latent-resolution selection mask used for culling (any value > 0 is
selected; see ``tiling.selection``); keyword-only ``radius``, ``margin``, ``pad_batches``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from .geometry import Rect
from .plan import TilePlan
from .selection import select_tiles
from .weights import TileWeights


@dataclass(frozen=True, order=True)
class TileRef(Rect):
    """A tile rectangle plus the index of the batch element it was cut from."""

    batch: int = 0


ModelFn = Callable[[torch.Tensor, Sequence[TileRef]], torch.Tensor]


@lru_cache(maxsize=64)
def _weights(plan: TilePlan, margin: int) -> TileWeights:
    # Plans are frozen and hashable; jittered plans repeat across steps and jobs, so cache.
    return TileWeights.for_plan(plan, margin)


def batch_sizes(n: int, batch_size: int) -> list[int]:
    """Split ``n`` items into the fewest batches of at most ``batch_size``, as even as possible."""
    if n == 0:
        return []
    k = -(-n // batch_size)
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


def fused_model_output(
    latents: torch.Tensor,
    model_fn: ModelFn,
    plan: TilePlan,
    batch_size: int,
    region_weights: torch.Tensor | None = None,
    *,
    radius: int = 0,
    margin: int = 0,
    pad_batches: bool = False,
) -> torch.Tensor:
    """Blend per-tile model outputs into one canvas-sized prediction.

    latents: [B, C, H, W] matching the plan. model_fn: ([N, C, h, w], refs) -> [N, C', h, w].
    region_weights: optional selection mask; only tiles touching it (dilated by ``radius``)
    are evaluated and the result is only meaningful inside ``blend_region(plan, mask, radius)``
    (zero where no evaluated tile has weight). ``margin``: see ``weights.axis_windows``.
    ``pad_batches``: repeat the last tile so every call has exactly ``batch_size`` items
    (static shapes for torch.compile / CUDA graphs); padded outputs are discarded.
    """
    b, _, h, w = latents.shape
    if (h, w) != (plan.height, plan.width):
        raise ValueError(f"latents {h}x{w} do not match plan {plan.height}x{plan.width}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    active = range(len(plan)) if region_weights is None else select_tiles(plan, region_weights, radius)
    weights = _weights(plan, margin)
    tiles_ = plan.tiles
    refs = [TileRef(tiles_[i].x, tiles_[i].y, tiles_[i].w, tiles_[i].h, batch=j) for i in active for j in range(b)]
    index = [i for i in active for _ in range(b)]

    acc: torch.Tensor | None = None
    out_dtype = acc_dtype = latents.dtype
    wsum: torch.Tensor | None = None
    done = 0
    for size in batch_sizes(len(refs), batch_size):
        chunk = refs[done : done + size]
        tiles = [latents[r.batch, :, r.y : r.bottom, r.x : r.right] for r in chunk]
        if pad_batches and size < batch_size:
            tiles += [tiles[-1]] * (batch_size - size)
            chunk = [*chunk, *[chunk[-1]] * (batch_size - size)]
        out = model_fn(torch.stack(tiles), chunk)
        if acc is None:
            # Accumulate in at least fp32 so fp16/bf16 tile outputs blend without rounding drift.
            out_dtype, acc_dtype = out.dtype, torch.promote_types(out.dtype, torch.float32)
            acc = torch.zeros(b, out.shape[1], h, w, dtype=acc_dtype, device=latents.device)
            wsum = torch.zeros(h, w, dtype=acc_dtype, device=latents.device)
        for k in range(size):
            r, i = refs[done + k], index[done + k]
            wt = weights.tile(i, acc_dtype, latents.device)
            acc[r.batch, :, r.y : r.bottom, r.x : r.right] += out[k].to(acc_dtype) * wt
            if r.batch == 0 and wsum is not None:
                wsum[r.y : r.bottom, r.x : r.right] += wt
        done += size
    if acc is None or wsum is None:  # nothing selected: nothing to predict
        return torch.zeros_like(latents)
    # Dividing by the float sum (== 1 up to rounding) makes identical tile outputs blend exactly.
    return torch.where(wsum > 0, acc / wsum.clamp_min(1e-12), torch.zeros_like(acc)).to(out_dtype)
