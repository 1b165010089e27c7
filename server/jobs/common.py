"""Generation parameters shared by every diffusion job (prompt, seed, steps, sampler, …)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from ..models.loader import LoadedModel
from ..prompt import Blend, Conditioning, encode_pair, validate
from ..protocol import Fields, ProtocolError
from ..samplers import NAMES
from .base import JobContext, ParseContext

RESULT_FORMATS = ("png", "rgba8", "webp")


@dataclass(frozen=True)
class GenParams:
    prompt: str
    negative: str
    model: str
    seed: int
    steps: int
    cfg: float
    sampler: str
    result_format: str
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
        result_format=f.choice("result_format", RESULT_FORMATS, "png"),
        clip_skip=f.int("clip_skip", 1, lo=1, hi=12),
        blend=blend,
        vae=vae,
    )


def load_model(ctx: JobContext, gen: GenParams) -> LoadedModel:
    """The job's model with the per-job VAE override in place (reverted when the job ends)."""
    model = ctx.models.get(gen.model)
    if gen.vae is not None:
        use_vae_override(ctx, model, gen.vae)
    return model


def use_vae_override(ctx: JobContext, model: LoadedModel, name: str) -> None:
    from ..models.vae import use_vae

    path = ctx.models.asset("vaes", name)
    try:
        use_vae(model, name, path)
    except Exception as exc:
        raise ProtocolError("model_load", f"cannot load VAE {name!r}: {exc}") from exc


def encode_gen(model: LoadedModel, gen: GenParams, prompt: str | None = None) -> tuple[Conditioning, Conditioning]:
    """encode_pair with every prompt option of `gen` (clip skip, blend; activates `<lora:…>` tags)."""
    return encode_pair(model, gen.prompt if prompt is None else prompt, gen.negative, gen.clip_skip, blend=gen.blend)


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
