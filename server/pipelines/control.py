"""Conditioning hooks: what a job's controls add to every UNet call of its denoising loop.

A hook sees one guided UNet call (`UNetCall`: the latent input with the CFG branches concatenated,
the timestep, the text conditioning, which part of the canvas each batch item is, and which step of
how many this is) and adds keyword arguments for the UNet:

- `ControlNetHook`: runs its ControlNet on the same inputs with its control image — cropped to each
  item's latent rectangle, so a tile gets the control under it — and adds the residuals
  (`down_block_additional_residuals`, `mid_block_additional_residual`); several ControlNets add up, in
  order. Outside its `start`…`end` part of the run, or at strength 0, it is not run at all (the UNet
  then computes exactly what it computes without the control).
- `IPAdapterHook`: the job's IP-Adapters, installed in the UNet's attention processors for the job
  (`models.ipadapter.install`): their image embeddings (`added_cond_kwargs["image_embeds"]`) and
  per-call scales (0 outside an adapter's range).
Regional prompts plug in here the same way (a hook that adds to or replaces the text conditioning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from tiling.geometry import Rect

from ..models import ipadapter
from ..models.clip_vision import ClipVision

LATENT = 8


@dataclass(frozen=True)
class UNetCall:
    """One guided UNet call, as the hooks see it."""

    x: torch.Tensor  # latent input, CFG branches concatenated (uncond first), in the UNet's dtype
    t: torch.Tensor
    kwargs: dict[str, Any]  # the text conditioning (encoder_hidden_states, SDXL added_cond_kwargs)
    branches: int  # 2 with classifier-free guidance, else 1
    rects: Sequence[Rect] | None  # latent rectangle in the canvas of each item of a branch; None = whole canvas
    step: int  # index of this step in the run (0-based) …
    steps: int  # … of this many (the steps the job runs)

    @property
    def per_branch(self) -> int:
        return self.x.shape[0] // self.branches


class Hook(Protocol):
    def contribute(self, call: UNetCall, kwargs: dict[str, Any]) -> None:
        """Add this hook's UNet keyword arguments for `call` into `kwargs`."""


def in_range(step: int, steps: int, start: float, end: float) -> bool:
    """Whether step `step` of `steps` lies in the `start`…`end` fractions (diffusers' controlnet_keep rule)."""
    return not (step / steps < start or (step + 1) / steps > end)


def control_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 float32 control image → [1, 3, H, W] float32 (CPU)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


@dataclass
class ControlNetHook:
    net: Any  # diffusers ControlNetModel
    image: torch.Tensor  # [1, 3, H, W] float32 at the canvas's pixel size (8x its latent size)
    strength: float
    start: float
    end: float

    def active(self, step: int, steps: int) -> bool:
        return self.strength > 0 and in_range(step, steps, self.start, self.end)

    def cond(self, call: UNetCall) -> torch.Tensor:
        """The control image batch for `call`: one crop per item, repeated for each CFG branch."""
        if call.rects is None:
            h, w = call.x.shape[-2:]
            if tuple(self.image.shape[-2:]) != (h * LATENT, w * LATENT):
                raise ValueError(f"control image {tuple(self.image.shape[-2:])} does not cover latents {(h, w)}")
            crops = self.image.expand(call.per_branch, -1, -1, -1)
        else:
            crops = torch.cat([self.image[..., r.y * LATENT : r.bottom * LATENT, r.x * LATENT : r.right * LATENT]
                               for r in call.rects])  # fmt: skip
        p = next(self.net.parameters())
        return torch.cat([crops] * call.branches).to(p.device, p.dtype)

    def contribute(self, call: UNetCall, kwargs: dict[str, Any]) -> None:
        if not self.active(call.step, call.steps):
            return
        down, mid = self.net(
            call.x,
            call.t,
            encoder_hidden_states=call.kwargs["encoder_hidden_states"],
            controlnet_cond=self.cond(call),
            conditioning_scale=self.strength,
            guess_mode=False,
            added_cond_kwargs=call.kwargs.get("added_cond_kwargs"),
            return_dict=False,
        )
        prev_down = kwargs.get("down_block_additional_residuals")
        if prev_down is None:
            kwargs["down_block_additional_residuals"], kwargs["mid_block_additional_residual"] = list(down), mid
        else:  # several ControlNets add up, in order (as diffusers' MultiControlNetModel)
            kwargs["down_block_additional_residuals"] = [a + b for a, b in zip(prev_down, down, strict=True)]
            kwargs["mid_block_additional_residual"] = kwargs["mid_block_additional_residual"] + mid


@dataclass(frozen=True)
class Reference:
    """One IP-Adapter of a job: its image embeddings ([uncond, cond] or [cond], 1 image) and its range."""

    embeds: torch.Tensor
    strength: float
    start: float
    end: float


@torch.no_grad()
def reference_embeds(vision: ClipVision, rgb: np.ndarray, hidden_states: bool, cfg: bool) -> torch.Tensor:
    """The reference picture as an IP-Adapter reads it (diffusers' `encode_image`): the projected
    embedding with zeros as the unconditional one, or the penultimate hidden states with those of a
    black picture as the unconditional one. Shape [branches, 1, …]."""
    pixels = vision.pixels(rgb)
    if hidden_states:
        cond = vision.model(pixels, output_hidden_states=True).hidden_states[-2]
        uncond = vision.model(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    else:
        cond = vision.model(pixels).image_embeds
        uncond = torch.zeros_like(cond)
    return torch.stack([uncond, cond]) if cfg else cond[None]


@dataclass
class IPAdapterHook:
    unet: Any
    references: list[Reference]  # in the order the adapters were installed

    def contribute(self, call: UNetCall, kwargs: dict[str, Any]) -> None:
        scales = [r.strength if in_range(call.step, call.steps, r.start, r.end) else 0.0 for r in self.references]
        ipadapter.set_scales(self.unet, scales)
        n, dtype = call.per_branch, call.x.dtype
        embeds = []
        for ref in self.references:
            e = ref.embeds.to(call.x.device, dtype)
            embeds.append(torch.cat([b[None].expand(n, *b.shape) for b in e]))  # [branches * n, 1, …]
        added = dict(kwargs.get("added_cond_kwargs") or {})
        kwargs["added_cond_kwargs"] = added | {"image_embeds": embeds}


def apply_hooks(hooks: Sequence[Hook], call: UNetCall) -> dict[str, Any]:
    """The UNet kwargs of `call` with every hook's contribution."""
    kwargs = dict(call.kwargs)
    for hook in hooks:
        hook.contribute(call, kwargs)
    return kwargs
