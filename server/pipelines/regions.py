"""Regional prompts in our own loop: which prompt conditions which part of the canvas, per UNet call.

A `RegionGuide` belongs to one `denoise.Guidance` (one sampling canvas). It holds each prompt's text
conditioning (prompt 0: the job's own prompt, the background; then the regions) and per-latent-pixel
prompt weights built from the soft region masks:

    w_r = strength_r · mask_r, scaled down by Σ w where regions overlap beyond 1;
    w_background = 1 − min(1, Σ w)          (the weights sum to 1 everywhere)

For each UNet call (`apply`) it crops the weights to the call's latent rectangles (whole canvas, or one
rectangle per tile of the fused tiler), and then:

- one prompt has weight 1 over every item of the call (a tile no region touches, or a region covering
  it all): that prompt's conditioning is passed the plain way — the call is exactly a plain call with
  that prompt, at no extra cost;
- otherwise the weights are area-averaged onto every UNet level's token grid and handed, with every
  prompt's text, to the masked cross-attention processors (`regionattn`) in `cross_attention_kwargs`.

SDXL's pooled text embedding conditions the whole UNet call (it enters the time embedding), so it
cannot follow a mask: each item gets the prompts' pooled embeddings averaged by the prompts' share of
that item's area (the background's share counted too); a tile gets the mix of what it covers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tiling.geometry import Rect

from ..prompt import Conditioning
from .regionattn import KWARG

LATENT = 8
CACHE_CALLS = 64  # per-call payloads kept (a tile plan repeats its rectangles every step)


@dataclass(frozen=True)
class PromptText:
    """One prompt's conditioning for both guidance branches."""

    cond: Conditioning
    uncond: Conditioning


def prompt_weights(masks: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
    """Region masks [R, h, w] in [0, 1] → prompt weights [R + 1, h, w] (background first), summing to 1."""
    w = masks.float().clamp(0, 1) * torch.tensor(list(strengths), dtype=torch.float32)[:, None, None]
    total = w.sum(0)
    w = w / total.clamp(min=1.0)
    return torch.cat([(1.0 - total.clamp(max=1.0))[None], w])


def latent_masks(masks: torch.Tensor) -> torch.Tensor:
    """Pixel masks [R, H, W] (sides multiples of 8) → latent resolution by area averaging."""
    h, w = masks.shape[-2:]
    if h % LATENT or w % LATENT:
        raise ValueError(f"region masks of {w}x{h} px: sides must be multiples of {LATENT}")
    return F.avg_pool2d(masks.float()[None], LATENT)[0]


def grids(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    """The token grid of each UNet level for a latent of h x w (a stride-2 conv takes n to ceil(n / 2))."""
    out = [(h, w)]
    for _ in range(levels - 1):
        h, w = -(-h // 2), -(-w // 2)
        out.append((h, w))
    return out


class RegionGuide:
    """The regional conditioning of one sampling canvas; see the module docstring."""

    def __init__(self, texts: Sequence[PromptText], weights: torch.Tensor, levels: int, xl: bool) -> None:
        if len(texts) != weights.shape[0]:
            raise ValueError(f"{len(texts)} prompts but {weights.shape[0]} weight maps")
        self.texts, self.weights, self.levels, self.xl = list(texts), weights.float().cpu(), levels, xl
        self._calls: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._text_cache: dict[tuple[int, int, int], torch.Tensor] = {}

    @classmethod
    def build(
        cls,
        background: PromptText,
        regions: Sequence[PromptText],
        masks: torch.Tensor,
        strengths: Sequence[float],
        levels: int,
        xl: bool,
    ) -> RegionGuide | None:
        """From pixel masks [R, H, W] at the canvas size; None when no region covers any of it
        (the job then samples exactly as without regions)."""
        weights = prompt_weights(latent_masks(masks), strengths)
        used = [r for r in range(len(regions)) if bool(weights[r + 1].any())]
        if not used:
            return None
        keep = [0] + [r + 1 for r in used]
        return cls([background] + [regions[r] for r in used], weights[keep], levels, xl)

    @property
    def prompts(self) -> int:
        return len(self.texts)

    def coverage(self) -> list[float]:
        """Each prompt's share of the canvas (background first)."""
        return [round(float(v), 4) for v in self.weights.mean((1, 2))]

    def apply(self, kw: dict[str, Any], n: int, branches: int, rects: Sequence[Rect] | None = None) -> dict[str, Any]:
        """`kw` (the plain UNet kwargs of a call with `n` items per branch) with the regions of the call's
        latent rectangles (`rects`, one per item; None = the whole canvas for every item)."""
        key = (None if rects is None else tuple((r.x, r.y, r.w, r.h) for r in rects), n, branches)
        delta = self._calls.get(key)
        if delta is None:
            delta = self._delta(n, branches, rects, kw["encoder_hidden_states"])
            self._calls[key] = delta
            if len(self._calls) > CACHE_CALLS:
                self._calls.popitem(last=False)
        else:
            self._calls.move_to_end(key)
        if not delta:
            return kw
        out = dict(kw)
        if "hidden" in delta:
            out["encoder_hidden_states"] = delta["hidden"]
        if "pooled" in delta:
            out["added_cond_kwargs"] = {**kw["added_cond_kwargs"], "text_embeds": delta["pooled"]}
        if "payload" in delta:
            out["cross_attention_kwargs"] = {**(kw.get("cross_attention_kwargs") or {}), KWARG: delta["payload"]}
        return out

    # --- internals ------------------------------------------------------------------------------------

    def _crop(self, n: int, rects: Sequence[Rect] | None) -> torch.Tensor:
        if rects is None:
            return self.weights[None].expand(n, -1, -1, -1)
        if len(rects) != n:
            raise ValueError(f"{len(rects)} rectangles for {n} items")
        return torch.stack([self.weights[:, r.y : r.bottom, r.x : r.right] for r in rects])

    def _delta(self, n: int, branches: int, rects: Sequence[Rect] | None, like: torch.Tensor) -> dict[str, Any]:
        """What the call's kwargs change: nothing, the text alone, or the attention payload (+ SDXL pooled)."""
        w = self._crop(n, rects)  # [n, P, h, w]
        dev, dtype = like.device, like.dtype
        full = [p for p in range(self.prompts) if bool((w[:, p] == 1).all())]
        if full:  # one prompt alone: a plain call with it (the background's is the call as it is)
            p = full[0]
            if p == 0:
                return {}
            alone = {"hidden": self._text(p, n, branches, dev, dtype)}
            pooled = self._pooled_of(p, n, branches, dev, dtype)
            return alone if pooled is None else alone | {"pooled": pooled}
        grid_w = {}
        for gh, gw in grids(w.shape[-2], w.shape[-1], self.levels):
            g = F.adaptive_avg_pool2d(w, (gh, gw)).flatten(2).transpose(1, 2)  # [n, Q, P]
            grid_w[str(gh * gw)] = torch.cat([g] * branches).to(dev, dtype)
        payload = {"text": {f"{p:02d}": self._text(p, n, branches, dev, dtype) for p in range(self.prompts)},
                   "weight": grid_w}  # fmt: skip
        delta: dict[str, Any] = {"payload": payload}
        if self.xl:
            share = w.mean((2, 3))  # [n, P]: each prompt's part of each item
            delta["pooled"] = self._pooled_mix(share, branches, dev, dtype)
        return delta

    def _branches(self, p: int, branches: int) -> list[Conditioning]:
        t = self.texts[p]
        return [t.uncond, t.cond] if branches == 2 else [t.cond]

    def _text(self, p: int, n: int, branches: int, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (p, n, branches)
        if key not in self._text_cache:  # the same expression as Guidance.unet_kwargs: bit-identical inputs
            parts = self._branches(p, branches)
            self._text_cache[key] = torch.cat([c.embeds.expand(n, -1, -1) for c in parts]).to(dev, dtype)
        return self._text_cache[key]

    def _pooled_of(self, p: int, n: int, branches: int, dev: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        parts = self._branches(p, branches)
        if not self.xl or any(c.pooled is None for c in parts):
            return None
        return torch.cat([c.pooled.expand(n, -1) for c in parts]).to(dev, dtype)  # type: ignore[union-attr]

    def _pooled_mix(self, share: torch.Tensor, branches: int, dev: torch.device, dtype: torch.dtype) -> torch.Tensor:
        out = []
        for b in range(branches):
            table = torch.cat([self._branches(p, branches)[b].pooled for p in range(self.prompts)])  # type: ignore[misc]
            out.append(share.to(table.device, table.dtype) @ table)  # [n, D]
        return torch.cat(out).to(dev, dtype)
