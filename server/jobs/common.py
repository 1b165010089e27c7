"""Generation parameters shared by every diffusion job (prompt, seed, steps, sampler, …)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from ..protocol import Fields, ProtocolError
from ..samplers import NAMES
from .base import ParseContext

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

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def parse_gen(f: Fields, ctx: ParseContext, prompt_required: bool = True) -> GenParams:
    prompt = f.str("prompt") if prompt_required else f.str("prompt", "")
    model = ctx.models.entry(f.str("model", None, max_len=512)).name
    seed = f.int("seed", -1, lo=-1, hi=2**32 - 1)
    if seed == -1:
        seed = random.SystemRandom().randrange(2**32)
    return GenParams(
        prompt=prompt,
        negative=f.str("negative", ""),
        model=model,
        seed=seed,
        steps=f.int("steps", 20, lo=1, hi=ctx.limits.max_steps),
        cfg=f.float("cfg", 7.0, lo=0.0, hi=30.0),
        sampler=f.choice("sampler", NAMES, "Euler a"),
        result_format=f.choice("result_format", RESULT_FORMATS, "png"),
        clip_skip=f.int("clip_skip", 1, lo=1, hi=12),
    )


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
