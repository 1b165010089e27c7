"""What every diffusion job shares: its generation parameters (prompt, seed, steps, sampler, …), the
one way to its model and conditioning (`Diffusion`), batch seeds and one progress bar."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import torch

from ..errors import Cancelled
from ..models.loader import LoadedModel
from ..pipelines import denoise
from ..pipelines.preview import lazy_preview
from ..prompt import Blend, Conditioning, encode_pair, validate
from ..protocol import Fields, ProtocolError
from ..samplers import NAMES
from .base import JobContext, ParseContext


@dataclass(frozen=True)
class GenParams:
    prompt: str
    negative: str
    model: str
    seed: int
    steps: int
    cfg: float
    sampler: str
    clip_skip: int = 1
    blend: Blend | None = None  # mix a second prompt's embeddings in (prompt.Blend)
    vae: str | None = None  # VAE override from welcome.vaes

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("blend", "vae"):  # optional features are only reported when used
            if out[key] is None:
                del out[key]
        return out


def parse_gen(f: Fields, ctx: ParseContext, prompt_required: bool = True) -> GenParams:
    prompt = f.str("prompt") if prompt_required else f.str("prompt", "")
    model = ctx.models.entry(f.str("model", None, max_len=512)).name
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
    return GenParams(
        prompt=prompt,
        negative=negative,
        model=model,
        seed=seed,
        steps=f.int("steps", 20, lo=1, hi=ctx.limits.max_steps),
        cfg=f.float("cfg", 7.0, lo=0.0, hi=30.0),
        sampler=f.choice("sampler", NAMES, "Euler a"),
        clip_skip=f.int("clip_skip", 1, lo=1, hi=12),
        blend=blend,
        vae=vae,
    )


class Diffusion:
    """A diffusion job's model and conditioning with every option of its `GenParams` applied: the VAE
    override when the model is loaded, clip skip / blend / `<lora:…>` tags when the prompt is encoded.
    Jobs reach the model only through here, so none can accept an option and forget it."""

    def __init__(self, ctx: JobContext, gen: GenParams) -> None:
        self.ctx, self.gen = ctx, gen

    @cached_property
    def model(self) -> LoadedModel:
        """The resident model for this job, loaded on first use (a job may finish without one)."""
        return self._with_vae(self.ctx.models.get(self.gen.model))

    def use_refiner(self, name: str) -> LoadedModel:
        """Continue with the SDXL refiner (cached beside the base when both fit), with the same VAE override."""
        self.model = self._with_vae(self.ctx.models.get_refiner(name))
        return self.model

    def encode(self, networks: bool = True) -> tuple[Conditioning, Conditioning]:
        """Positive/negative conditioning; `networks=False` strips `<lora:…>` tags without activating them."""
        gen = self.gen
        return encode_pair(self.model, gen.prompt, gen.negative, gen.clip_skip, blend=gen.blend, networks=networks)

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
