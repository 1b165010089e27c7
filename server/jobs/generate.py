"""`generate`: txt2img, or img2img from an `init` image at a strength."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..pipelines import denoise
from ..pipelines.preview import latent_rgb
from ..prompt import encode_pair
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, ResultImage
from .common import GenParams, parse_gen, parse_size


@dataclass(frozen=True)
class GenerateRequest:
    gen: GenParams
    width: int
    height: int
    batch: int
    strength: float
    init: np.ndarray | None  # HxWx4 uint8, already at width x height


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx{3,4} uint8 → [1,3,H,W] float in [-1, 1]."""
    return torch.from_numpy(rgb[..., :3].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_pixels(img: torch.Tensor) -> np.ndarray:
    """[3,H,W] in [0,1] → HxWx3 uint8."""
    return (img.permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)


def resize(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    if rgba.shape[1] == w and rgba.shape[0] == h:
        return rgba
    return np.asarray(Image.fromarray(rgba).resize((w, h), Image.Resampling.LANCZOS))


class Generate:
    kind = "generate"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> GenerateRequest:
        gen = parse_gen(f, ctx)
        native = ctx.models.entry(gen.model).native
        init = ctx.decode("init", images["init"]) if "init" in images else None
        default = (init.shape[1], init.shape[0]) if init is not None else (native, native)
        width, height = parse_size(f, ctx, default)
        if init is not None:
            init = resize(init, width, height)
        return GenerateRequest(
            gen=gen,
            width=width,
            height=height,
            batch=f.int("batch", 1, lo=1, hi=ctx.limits.max_batch),
            strength=f.float("strength", 0.75, lo=0.01, hi=1.0),
            init=init,
        )

    def run(self, req: GenerateRequest, ctx: JobContext) -> JobResult:
        model = ctx.models.get(req.gen.model)
        latent_shape = (1, 4, req.height // 8, req.width // 8)
        init = denoise.encode_image(model, to_tensor(req.init)) if req.init is not None else None
        extra = None
        if model.family.inpaint:  # 9-channel UNet without a selection: mask everything
            blank = denoise.encode_image(model, torch.zeros(1, 3, req.height, req.width))
            extra = torch.cat([torch.ones(1, 1, *latent_shape[2:]), blank.cpu()], 1).to(model.device, model.dtype)
        cond, uncond = encode_pair(model, req.gen.prompt, req.gen.negative, req.gen.clip_skip)
        guidance = denoise.Guidance(model, cond, uncond, req.gen.cfg, req.width, req.height)
        images: list[ResultImage] = []
        seeds = [(req.gen.seed + i) % 2**32 for i in range(req.batch)]
        for i, seed in enumerate(seeds):
            done = i * req.gen.steps

            def on_step(step: int, total: int, latents: torch.Tensor, done: int = done) -> None:
                if ctx.cancelled():
                    raise denoise.Cancelled
                ctx.progress(done + step, req.batch * total, latent_rgb(latents, model.family.xl))

            latents = denoise.sample(
                model,
                guidance.model_fn(extra),
                req.gen.sampler,
                req.gen.steps,
                denoise.seeded_noise(seed, latent_shape),
                torch.Generator("cpu").manual_seed(seed),
                init=init,
                strength=req.strength if init is not None else 1.0,
                on_step=on_step,
            )
            pixels = to_pixels(denoise.decode_latents(model, latents)[0])
            images.append(ResultImage(0, 0, pixels, seed=seed))
        params: dict[str, Any] = req.gen.describe() | {"width": req.width, "height": req.height, "seeds": seeds}
        if req.init is not None:
            params["strength"] = req.strength
        return JobResult(images, params)
