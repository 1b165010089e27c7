"""The denoising loop shared by every job.

Owning the loop (rather than calling a diffusers pipeline) is what lets the tiler swap in a fused
per-tile model call, inpainting apply a soft per-pixel mask at each step, and the server report
progress / honour cancel between steps. The model call is a plain function `(x, t) -> eps`; the UNet
inside it goes through `fastpath` (eager, or CUDA graphs / torch.compile per `sdbridge serve --fast`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tiling.steps import steps_run

from ..models.loader import LoadedModel
from ..prompt import Conditioning
from ..samplers import make_scheduler
from . import fastpath

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass
class Guidance:
    """Text conditioning for one job, batched for classifier-free guidance."""

    model: LoadedModel
    cond: Conditioning
    uncond: Conditioning
    cfg: float
    width: int
    height: int

    def unet_kwargs(self, n: int, crop: tuple[int, int] = (0, 0)) -> dict[str, Any]:
        """UNet keyword args for `n` latents per guidance branch (CFG doubles them)."""
        parts = [self.uncond, self.cond] if self.use_cfg else [self.cond]
        dtype, dev = self.model.dtype, self.model.device
        hidden = torch.cat([p.embeds.expand(n, -1, -1) for p in parts]).to(dev, dtype)
        kwargs: dict[str, Any] = {"encoder_hidden_states": hidden}
        if self.model.family.xl:
            assert self.cond.pooled is not None and self.uncond.pooled is not None
            pooled = torch.cat([p.pooled.expand(n, -1) for p in parts]).to(dev, dtype)  # type: ignore[union-attr]
            if self.model.family.refiner:
                # Refiner micro-conditioning: original size, crop top-left, aesthetic score (diffusers'
                # defaults: 6 for the prompt, 2.5 for the negative).
                scores = [2.5, 6.0] if self.use_cfg else [6.0]
                rows = [[self.height, self.width, crop[0], crop[1], s] for s in scores]
                ids = torch.tensor(rows, dtype=dtype).repeat_interleave(n, 0)
            else:
                # SDXL micro-conditioning: original size, crop top-left, target size.
                row = [self.height, self.width, crop[0], crop[1], self.height, self.width]
                ids = torch.tensor(row, dtype=dtype).expand(pooled.shape[0], -1)
            kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": ids.to(dev)}
        return kwargs

    @property
    def use_cfg(self) -> bool:
        return self.cfg != 1.0

    def model_fn(self, extra: torch.Tensor | None = None, per_call: int | None = None) -> ModelFn:
        """Plain whole-canvas model call; `extra` is concatenated on channels (9-channel inpaint UNets).

        A batch goes through the UNet in one call, or in calls of `per_call` images when memory is
        short (the UNet is batch-invariant: the split changes no result)."""

        def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            n = x.shape[0] if per_call is None else per_call
            parts = [x[i : i + n] for i in range(0, x.shape[0], n)]
            outs = [self.guided(p, t, extra, self.unet_kwargs(p.shape[0])) for p in parts]
            return outs[0] if len(outs) == 1 else torch.cat(outs)

        return call

    def guided(self, x: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None, kw: dict[str, Any]) -> torch.Tensor:
        """One UNet call on `x` (both CFG branches in one batch), guided."""
        xin = torch.cat([x, x]) if self.use_cfg else x
        if extra is not None:
            extra = extra.expand(x.shape[0], -1, -1, -1)  # one conditioning image for the whole batch
            xin = torch.cat([xin, torch.cat([extra, extra]) if self.use_cfg else extra], dim=1)
        out = fastpath.for_model(self.model)(xin.to(self.model.dtype), t, **kw).to(x.dtype)
        if not self.use_cfg:
            return out
        uncond, cond = out.chunk(2)
        return uncond + self.cfg * (cond - uncond)


def timesteps_for(scheduler: Any, steps: int, strength: float, device: torch.device) -> torch.Tensor:
    """The schedule for `steps` at `strength` (img2img starts part-way; txt2img uses all)."""
    scheduler.set_timesteps(steps, device=device)
    start = (steps - steps_run(steps, strength)) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:]


@dataclass(frozen=True)
class Run:
    """What a denoising run is, before any model call: the sampler and steps, the starting noise of
    each image with that image's own generator (for the per-step noise of ancestral samplers), and
    for img2img the init latents and strength.

    A batch is N images in one tensor ([N, C, h, w]); every per-image value is drawn from that
    image's seed alone, so image i of a batch is the image a batch of one with its seed gives.
    """

    sampler: str
    steps: int
    noise: torch.Tensor
    generators: list[torch.Generator]
    init: torch.Tensor | None = None  # [1 or N, C, h, w] scaled latents
    strength: float = 1.0


def seeded(seeds: list[int], shape: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Generator]]:
    """`Run.noise` and `Run.generators` for images seeded `seeds`, each latent of `shape` ([1, C, h, w]).

    As in diffusers' pipelines, each image's generator draws its starting noise and then, continuing,
    the per-step noise of ancestral samplers. CPU generators: the same seed gives the same picture
    on any device."""
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]), gens


@dataclass
class SamplerState:
    """A denoising run that can stop part-way and be continued, e.g. by a refiner.

    The scheduler (with its step index and multistep history), latents and generators travel
    together, so continuing gives the same schedule a single uninterrupted run would have.
    """

    scheduler: Any
    timesteps: torch.Tensor
    latents: torch.Tensor
    noise: torch.Tensor
    init: torch.Tensor | None
    generators: list[torch.Generator]
    index: int = 0

    @property
    def total(self) -> int:
        return len(self.timesteps)

    @property
    def done(self) -> bool:
        return self.index >= self.total

    def step_kwargs(self) -> dict[str, Any]:
        """The generator argument for `scheduler.step` when it takes one: one generator per image."""
        if "generator" not in inspect.signature(self.scheduler.step).parameters:
            return {}
        return {"generator": self.generators[0] if len(self.generators) == 1 else self.generators}


def start(model: LoadedModel, spec: Run) -> SamplerState:
    """Set up a run (scheduler, starting latents) without taking any step."""
    scheduler = make_scheduler(spec.sampler, model.scheduler_config)
    img2img = spec.init is not None
    timesteps = timesteps_for(scheduler, spec.steps, spec.strength if img2img else 1.0, model.device)
    noise = spec.noise.to(model.device, torch.float32)
    init = None if spec.init is None else spec.init.to(model.device, torch.float32).expand(noise.shape[0], -1, -1, -1)
    if init is not None and spec.strength < 1.0:
        latents = scheduler.add_noise(init, noise, timesteps[:1])
    else:
        latents = noise * scheduler.init_noise_sigma
    return SamplerState(scheduler, timesteps, latents, noise, init, spec.generators)


def run(
    state: SamplerState,
    model_fn: ModelFn,
    until: int | None = None,
    keep_mask: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
) -> SamplerState:
    """Take steps `state.index … until-1` (default: to the end); the state is updated in place.

    Nothing here reads a tensor back to the host: the only sync is a preview that `on_step`'s
    receiver decides to send."""
    scheduler, timesteps = state.scheduler, state.timesteps
    stop = state.total if until is None else min(until, state.total)
    step_kw = state.step_kwargs()
    latents, init, noise = state.latents, state.init, state.noise
    for i in range(state.index, stop):
        t = timesteps[i]
        x = scheduler.scale_model_input(latents, t)
        eps = model_fn(x, t)
        latents = scheduler.step(eps, t, latents, **step_kw).prev_sample
        if keep_mask is not None and init is not None:
            ahead = timesteps[i + 1 : i + 2]
            ref = scheduler.add_noise(init, noise, ahead) if len(ahead) else init
            latents = ref + (latents - ref) * keep_mask
        state.latents, state.index = latents, i + 1
        if on_step is not None:
            on_step(i + 1, state.total, latents)
    return state


def sample(
    model: LoadedModel,
    model_fn: ModelFn,
    spec: Run,
    keep_mask: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise `spec` and return its latents.

    `keep_mask` (latent resolution, 1 = denoise freely, 0 = keep `init`) re-imposes the original
    outside the selection after every step — latent masking for regular checkpoints.
    """
    return run(start(model, spec), model_fn, keep_mask=keep_mask, on_step=on_step).latents


@torch.no_grad()
def encode_image(model: LoadedModel, rgb: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [-1,1] → scaled latents (deterministic: the distribution's mean)."""
    x = rgb.to(model.device, model.vae_dtype)
    return model.vae.encode(x).latent_dist.mean.float() * model.vae_scale


@torch.no_grad()
def decode_latents(model: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents → [B,3,H,W] in [0,1]."""
    x = (latents / model.vae_scale).to(model.device, model.vae_dtype)
    return (model.vae.decode(x).sample.float() / 2 + 0.5).clamp(0, 1)
