"""What every diffusion job shares: its generation parameters (prompt, seed, steps, sampler, …), the
one way to its model and conditioning (`Diffusion`), batch seeds and one progress bar."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ..errors import Cancelled
from ..models.loader import LoadedModel
from ..pipelines import denoise, regionattn
from ..pipelines.preview import lazy_preview
from ..pipelines.regions import PromptText, RegionGuide
from ..prompt import Blend, Conditioning, encode_pair, encode_region, extract_networks, region_unet_networks, validate
from ..protocol import Fields, ImageRef, ProtocolError
from ..samplers import NAMES, SCHEDULE_NAMES, Sampler, check
from .base import JobContext, ParseContext
from .controls import ControlSpec, JobControls, parse_controls
from .regions import Place, RegionSpec, resized


@dataclass(frozen=True)
class GenParams:
    prompt: str
    negative: str
    model: str
    seed: int
    steps: int
    cfg: float
    sampler: Sampler
    clip_skip: int = 1
    blend: Blend | None = None  # mix a second prompt's embeddings in (prompt.Blend)
    vae: str | None = None  # VAE override from welcome.vaes
    controls: tuple[ControlSpec, ...] = ()  # ControlNets / IP-Adapters (jobs.controls)
    regions: tuple[RegionSpec, ...] = ()  # a prompt per area of the canvas (jobs.regions)

    def describe(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("controls", "regions")}
        out |= {"sampler": self.sampler.name, "schedule": self.sampler.schedule}
        for key in ("blend", "vae"):  # optional features are only reported when used
            if out[key] is None:
                del out[key]
        if self.blend is not None:
            out["blend"] = asdict(self.blend)
        if self.controls:
            out["controls"] = [c.describe() for c in self.controls]
        if self.regions:
            out["regions"] = [r.describe() for r in self.regions]
        return out


def parse_gen(
    f: Fields, ctx: ParseContext, prompt_required: bool = True, images: Mapping[str, ImageRef] | None = None
) -> GenParams:
    """The generation parameters every diffusion job has; `images` (the job's) when it takes `controls`."""
    prompt = f.str("prompt") if prompt_required else f.str("prompt", "")
    entry = ctx.models.entry(f.str("model", None, max_len=512))
    model = entry.name
    seed = f.int("seed", -1, lo=-1, hi=2**32 - 1)
    if seed == -1:
        seed = random.SystemRandom().randrange(2**32)
    negative = f.str("negative", "")
    # LoRA / explicit embedding names are checked now, so the client hears about a typo at once.
    validate(prompt, ctx.models, "prompt")
    validate(negative, ctx.models, "negative", networks=False)
    blend = None
    if f.data.get("blend") is not None:
        bf = Fields(f.map("blend"), f"{f.where}.blend", f.job_id)
        blend = Blend(bf.str("prompt"), bf.float("ratio", 0.5, lo=0.0, hi=1.0))
        validate(blend.prompt, ctx.models, "blend.prompt", networks=False)
    vae = f.str("vae", None, max_len=512)
    if vae is not None:
        ctx.models.asset("vaes", vae)
    steps = f.int("steps", 20, lo=1, hi=ctx.limits.max_steps)
    sampler = parse_sampler(f, steps)
    return GenParams(
        prompt=prompt,
        negative=negative,
        model=model,
        seed=seed,
        steps=steps,
        cfg=f.float("cfg", 7.0, lo=0.0, hi=30.0),
        sampler=sampler,
        clip_skip=f.int("clip_skip", 1, lo=1, hi=12),
        blend=blend,
        vae=vae,
        controls=parse_controls(f, images or {}, ctx, entry.family),
    )


def parse_sampler(f: Fields, steps: int) -> Sampler:
    """`sampler` + `schedule` (A1111's Schedule type), checked to go together and with `steps`."""
    sampler = Sampler(f.choice("sampler", NAMES, "Euler a"), f.choice("schedule", SCHEDULE_NAMES, "Automatic"))
    why = check(sampler, steps)
    if why is not None:
        raise ProtocolError("bad_field", f"{f.where}.{why}", f.job_id)
    return sampler


class Diffusion:
    """A diffusion job's model and conditioning with every option of its `GenParams` applied: the VAE
    override when the model is loaded, clip skip / blend / `<lora:…>` tags when the prompt is encoded.
    Jobs reach the model only through here, so none can accept an option and forget it."""

    def __init__(self, ctx: JobContext, gen: GenParams) -> None:
        self.ctx, self.gen = ctx, gen
        self._texts: dict[tuple[str, bool], list[PromptText]] = {}

    @cached_property
    def model(self) -> LoadedModel:
        """The resident model for this job, loaded on first use (a job may finish without one)."""
        return self._with_vae(self.ctx.models.get(self.gen.model))

    def use_refiner(self, name: str) -> LoadedModel:
        """Continue with the SDXL refiner (cached beside the base when both fit), with the same VAE override."""
        self.model = self._with_vae(self.ctx.models.get_refiner(name))
        return self.model

    def encode(self, networks: bool = True) -> tuple[Conditioning, Conditioning]:
        """Positive/negative conditioning; `networks=False` strips `<lora:…>` tags without activating them.

        Activated LoRAs: the prompt's, and the UNet part of the regions' (one UNet serves every region)."""
        gen = self.gen
        extra = [t for r in gen.regions for t in region_unet_networks(r.prompt, r.loras)]
        model = self.model
        return encode_pair(
            model, gen.prompt, gen.negative, gen.clip_skip, blend=gen.blend, networks=networks, extra_networks=extra
        )

    def _regions(self, background: PromptText, place: Place, networks: bool) -> RegionGuide | None:
        model, gen = self.model, self.gen
        key = (model.name, networks)
        if key not in self._texts:  # each region's text once per model (batch images and passes reuse it)
            self._texts[key] = [self._region_text(r, networks) for r in gen.regions]
        masks = torch.from_numpy(np.stack([place(r.mask) for r in gen.regions]))
        levels = len(model.unet.config.block_out_channels)
        guide = RegionGuide.build(
            background, self._texts[key], masks, [r.strength for r in gen.regions], levels, model.family.xl
        )
        if guide is not None:
            regionattn.install(model)
        return guide

    def _region_text(self, region: RegionSpec, networks: bool) -> PromptText:
        gen = self.gen
        negative = gen.negative if region.negative is None else region.negative
        loras = region.loras if networks else ()
        text = region.prompt if networks else extract_networks(region.prompt)[0]
        cond, uncond = encode_region(self.model, text, negative, gen.clip_skip, loras)
        return PromptText(cond, uncond)

    @cached_property
    def controls(self) -> JobControls | None:
        """The job's controls, loaded (its IP-Adapters installed in the UNet) on first use; None without any."""
        if not self.gen.controls:
            return None
        return JobControls(self.ctx, self.model, self.gen.controls, self.gen.cfg != 1.0)

    def guidance(
        self,
        width: int,
        height: int,
        maps: list[Any] | None = None,
        place: Place | None = None,
        networks: bool = True,
    ) -> denoise.Guidance:
        """The guidance of a pass over a `width` x `height` canvas: the job's controls as hooks (`maps`: the
        ControlNet images in that canvas's geometry, `JobControls.maps`; None: no ControlNets) and its
        regions on it (`place` maps a canvas-size region mask onto it; default: resized to it)."""
        cond, uncond = self.encode(networks)
        # Controls first: their IP-Adapter processors go into the UNet before the regions' wrappers wrap them.
        ctl = self.controls
        # A refiner finishing the picture takes no controls: they are made for the base model's UNet.
        hooks = ctl.hooks(maps) if ctl is not None and ctl.model is self.model else []
        guidance = denoise.Guidance(self.model, cond, uncond, self.gen.cfg, width, height, hooks)
        if self.gen.regions:
            guidance.regions = self._regions(PromptText(cond, uncond), place or resized(width, height), networks)
        return guidance

    def _with_vae(self, model: LoadedModel) -> LoadedModel:
        if self.gen.vae is None:
            return model
        from ..models.vae import use_vae

        path = self.ctx.models.asset("vaes", self.gen.vae)
        try:
            use_vae(model, self.gen.vae, path)  # reverted by the queue when the job ends
        except Exception as exc:
            raise ProtocolError("model_load", f"cannot load VAE {self.gen.vae!r}: {exc}") from exc
        return model


class Progress:
    """One progress bar over every sampler step of every image of a job (all passes, stages and
    batch images); cancel is checked at each step."""

    def __init__(self, ctx: JobContext, total: int) -> None:
        self.ctx, self.total, self.done = ctx, max(total, 1), 0

    def step(self, model: LoadedModel, images: int = 1) -> denoise.StepCallback:
        """The callback for a run of `images` images sampled together (each step advances all of them)."""

        def on_step(_step: int, _total: int, latents: torch.Tensor) -> None:
            if self.ctx.cancelled():
                raise Cancelled
            self.done += images
            self.ctx.progress(min(self.done, self.total), self.total, lazy_preview(latents, model.family.xl))

        return on_step


def parse_batch(f: Fields, ctx: ParseContext) -> int:
    return f.int("batch", 1, lo=1, hi=ctx.limits.max_batch)


def batch_seeds(seed: int, batch: int) -> list[int]:
    """Seeds of a batch's images: image i is seeded `seed + i`, so a batch-1 job with it repeats the image."""
    return [(seed + i) % 2**32 for i in range(batch)]


def round8(v: int) -> int:
    return max(8, int(round(v / 8)) * 8)


def parse_size(f: Fields, ctx: ParseContext, default: tuple[int, int]) -> tuple[int, int]:
    w = round8(f.int("width", default[0], lo=8, hi=16384))
    h = round8(f.int("height", default[1], lo=8, hi=16384))
    if w * h > ctx.limits.max_pixels:
        raise ProtocolError(
            "bad_field", f"params.width/height: {w}x{h} exceeds the limit of {ctx.limits.max_pixels} pixels", ctx.job_id
        )
    return w, h
