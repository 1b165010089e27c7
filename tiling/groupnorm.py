"""GroupNorm statistics shared across tiles.

A tiled VAE pass normalises every tile with its own statistics unless told otherwise; tiles of a
bright sky and of a dark tree then get different gains and offsets, which shows as colour
drift between tiles. ``GroupNormSync`` swaps the ``forward`` of every ``nn.GroupNorm`` in a
module for one that can (a) accumulate exact pooled statistics (sums and sums of squares in
float64, so the pooled variance is E[x^2] - E[x]^2, which includes the spread of the tile
means) over each tile's own core region, and (b) normalise with fixed, previously pooled
statistics in float32 (fp16 activations overflow in the sums on big canvases).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Core region of the current tile as fractions of the tile input: (top, left, bottom, right).
Fractions = tuple[float, float, float, float]


@dataclass
class _Stats:
    sum: torch.Tensor | None = None
    sumsq: torch.Tensor | None = None
    count: int = 0
    mean: torch.Tensor | None = None  # [B, G] fixed statistics to apply
    var: torch.Tensor | None = None


@dataclass
class GroupNormSync:
    """Controls all GroupNorm layers of ``module``; use ``with sync.patched():`` around forwards.

    mode: "own" (plain GroupNorm), "apply" (fixed pooled stats), "collect" (accumulate the core
    region's sums; normalise with fixed stats if present, else with the tile's own).
    """

    module: nn.Module
    mode: str = "own"
    core: Fractions = (0.0, 0.0, 1.0, 1.0)
    input_hw: tuple[int, int] = (1, 1)
    stats: dict[int, _Stats] = field(default_factory=dict)
    last_hw: tuple[int, int] = (0, 0)  # spatial shape of the latest 4-D GroupNorm input

    def patched(self) -> contextlib.AbstractContextManager[None]:
        return self._patch()

    @contextlib.contextmanager
    def _patch(self) -> Iterator[None]:
        norms = [m for m in self.module.modules() if isinstance(m, nn.GroupNorm)]
        for m in norms:
            self.stats.setdefault(id(m), _Stats())
            m.forward = types.MethodType(self._make_forward(), m)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for m in norms:
                del m.forward  # back to the class method

    def start_collecting(self) -> None:
        """Reset the accumulators (fixed stats stay until ``finish_collecting``)."""
        for s in self.stats.values():
            s.sum, s.sumsq, s.count = None, None, 0
        self.mode = "collect"

    def finish_collecting(self) -> None:
        """Turn the accumulated sums into the fixed statistics and switch to "apply"."""
        for s in self.stats.values():
            if s.sum is None or s.sumsq is None or s.count == 0:
                continue
            mean = s.sum / s.count
            s.mean, s.var = mean, (s.sumsq / s.count - mean**2).clamp_min(0)
        self.mode = "apply"

    def _core_slices(self, h: int, w: int) -> tuple[slice, slice]:
        # Feature maps scale by powers of two relative to the tile input, so fractions map exactly.
        top, left, bottom, right = self.core
        return slice(round(top * h), round(bottom * h)), slice(round(left * w), round(right * w))

    def _make_forward(self):  # noqa: ANN202 - a bound-method factory
        sync = self

        def forward(gn: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
            s = sync.stats[id(gn)]
            if sync.mode == "collect":
                spatial = x
                if x.dim() == 4:
                    sync.last_hw = (x.shape[-2], x.shape[-1])
                elif x.shape[-1] == sync.last_hw[0] * sync.last_hw[1]:
                    # Attention normalises [B, C, H*W]; its input has the previous block's layout.
                    spatial = x.reshape(*x.shape[:2], *sync.last_hw)
                else:
                    raise ValueError(f"cannot locate the tile core in a GroupNorm input of shape {tuple(x.shape)}")
                rows, cols = sync._core_slices(spatial.shape[-2], spatial.shape[-1])
                core = spatial[..., rows, cols].to(torch.float64).reshape(x.shape[0], gn.num_groups, -1)
                add_sum, add_sq = core.sum(-1), (core * core).sum(-1)
                s.sum = add_sum if s.sum is None else s.sum + add_sum
                s.sumsq = add_sq if s.sumsq is None else s.sumsq + add_sq
                s.count += core.shape[-1]
            if sync.mode == "own" or s.mean is None or s.var is None:
                return F.group_norm(x, gn.num_groups, gn.weight, gn.bias, gn.eps)
            b, c = x.shape[:2]
            xf = x.float().reshape(b, gn.num_groups, -1)
            mean, var = s.mean.float()[..., None], s.var.float()[..., None]
            y = ((xf - mean) * torch.rsqrt(var + gn.eps)).reshape(x.shape)
            if gn.affine:
                shape = (1, c) + (1,) * (x.dim() - 2)
                y = y * gn.weight.float().view(shape) + gn.bias.float().view(shape)
            return y.to(x.dtype)

        return forward
