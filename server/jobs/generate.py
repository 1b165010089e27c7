"""`generate`: txt2img, or img2img from an `init` image at a strength.

Optional stages, in order: SDXL refiner hand-off (`refiner`, `refiner_switch`), then hires fix
(`hires`: upscale the first pass, img2img at the target size, tiled with the fused tiler when the
target is beyond what the model draws in one pass). `vae` swaps the VAE for the job; LoRAs,
embeddings and the prompt syntax come through the prompt (see `server.prompt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tiling.steps import steps_run

from ..imaging.tensors import to_pixels, to_tensor
from ..models.loader import LoadedModel
from ..pipelines import budget, denoise, tiled
from ..protocol import Fields, ImageRef, ProtocolError
from .base import JobContext, JobResult, ParseContext, Request, ResultImage
from .common import Diffusion, GenParams, Progress, batch_seeds, parse_batch, parse_gen, parse_size, round8

# Built-in hires upscalers; any other name is looked up in welcome.upscalers (model upscalers).
PIXEL_UPSCALERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
LATENT_UPSCALERS = ("latent", "latent-nearest")


@dataclass(frozen=True)
class Hires:
    scale: float
    width: int  # target size
    height: int
    steps: int
    strength: float
    upscaler: str
    tile: bool | None  # None = automatic (target area beyond 2x2 native)


@dataclass(frozen=True, kw_only=True)
class GenerateRequest(Request):
    gen: GenParams
    width: int
    height: int
    batch: int
    strength: float
    init: np.ndarray | None  # HxWx4 uint8, already at width x height
    refiner: str | None = None
    refiner_switch: float = 0.8
    hires: Hires | None = None


def resize(rgba: np.ndarray, w: int, h: int) -> np.ndarray:
    if rgba.shape[1] == w and rgba.shape[0] == h:
        return rgba
    return np.asarray(Image.fromarray(rgba).resize((w, h), Image.Resampling.LANCZOS))


def _parse_hires(f: Fields, ctx: ParseContext, gen: GenParams, width: int, height: int) -> Hires:
    scale = f.float("scale", 2.0, lo=1.0, hi=8.0)
    tw, th = round8(int(round(width * scale))), round8(int(round(height * scale)))
    if tw * th > ctx.limits.max_pixels:
        raise ProtocolError(
            "bad_field",
            f"params.hires.scale: {tw}x{th} exceeds the limit of {ctx.limits.max_pixels} pixels",
            ctx.job_id,
        )
    upscaler = f.str("upscaler", "lanczos", max_len=512)
    if upscaler not in PIXEL_UPSCALERS and upscaler not in LATENT_UPSCALERS:
        ctx.models.asset("upscalers", upscaler)  # unknown_model naming it (and the available ones)
    tile = f.data.get("tile")
    if tile is not None:
        tile = f.bool("tile")
    return Hires(
        scale,
        tw,
        th,
        f.int("steps", gen.steps, lo=1, hi=ctx.limits.max_steps),
        f.float("strength", 0.5, lo=0.01, hi=1.0),
        upscaler,
        tile,
    )


class Generate:
    kind = "generate"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> GenerateRequest:
        gen = parse_gen(f, ctx)
        entry = ctx.models.entry(gen.model)
        init = ctx.decode("init", images["init"]) if "init" in images else None
        default = (init.shape[1], init.shape[0]) if init is not None else (entry.native, entry.native)
        width, height = parse_size(f, ctx, default)
        if init is not None:
            init = resize(init, width, height)
        refiner = f.str("refiner", None, max_len=512)
        if refiner is not None:
            ctx.models.asset("refiners", refiner)
            if entry.family != "sdxl":
                why = f"params.refiner: a refiner finishes an SDXL base model, not {entry.family}"
                raise ProtocolError("bad_field", why, ctx.job_id)
        hires = None
        if f.data.get("hires") is not None:
            if init is not None:
                why = "params.hires: hires fix applies to txt2img (no init image)"
                raise ProtocolError("bad_field", why, ctx.job_id)
            hires = _parse_hires(Fields(f.map("hires"), f"{f.where}.hires", f.job_id), ctx, gen, width, height)
        return GenerateRequest(
            gen=gen,
            width=width,
            height=height,
            batch=parse_batch(f, ctx),
            strength=f.float("strength", 0.75, lo=0.01, hi=1.0),
            init=init,
            refiner=refiner,
            refiner_switch=f.float("refiner_switch", 0.8, lo=0.0, hi=1.0),
            hires=hires,
        )

    def run(self, req: GenerateRequest, ctx: JobContext) -> JobResult:
        """The whole batch is sampled together: one UNet call per step for all its images (memory
        permitting, `budget.per_call`), each image from its own seed, as a batch of one would draw it."""
        gen = req.gen
        sd = Diffusion(ctx, gen)
        model = sd.model
        seeds = batch_seeds(gen.seed, req.batch)
        first = steps_run(gen.steps, req.strength) if req.init is not None else gen.steps
        progress = Progress(
            ctx, req.batch * (first + (steps_run(req.hires.steps, req.hires.strength) if req.hires else 0))
        )
        init = denoise.encode_image(model, to_tensor(req.init)) if req.init is not None else None
        cond, uncond = sd.encode()
        guidance = denoise.Guidance(model, cond, uncond, gen.cfg, req.width, req.height)
        model_fn = _model_fn(guidance, req.strength if req.init is not None else 1.0, len(seeds), ctx)
        switch_at = int(round(first * req.refiner_switch)) if req.refiner else None

        noise = denoise.seeded(seeds, (1, 4, req.height // 8, req.width // 8))
        state = denoise.start(model, denoise.Run(gen.sampler, gen.steps, *noise, init, req.strength))
        denoise.run(state, model_fn, until=switch_at, on_step=progress.step(model, len(seeds)))
        params: dict[str, Any] = gen.describe() | {"width": req.width, "height": req.height, "seeds": seeds}
        if req.init is not None:
            params["strength"] = req.strength

        if req.refiner is not None:
            # The refiner joins the base in the model cache (both stay loaded when they fit).
            model = sd.use_refiner(req.refiner)
            rcond, runcond = sd.encode(networks=False)  # LoRAs are for the base's layers
            rguide = denoise.Guidance(model, rcond, runcond, gen.cfg, req.width, req.height)
            denoise.run(state, _model_fn(rguide, 1.0, len(seeds), None), on_step=progress.step(model, len(seeds)))
            params |= {"refiner": req.refiner, "refiner_switch": req.refiner_switch, "refiner_step": switch_at}

        images = _decode(model, state.latents)
        if req.hires is not None:
            hr = req.hires
            images = self._hires(sd, hr, images, state.latents, seeds, progress)
            params |= {
                "width": hr.width,
                "height": hr.height,
                "first_pass": [req.width, req.height],
                "hires": asdict(hr) | {"tiled": self._tiled(model, hr)},
            }
        return JobResult([ResultImage(0, 0, pix, seed=seed) for pix, seed in zip(images, seeds, strict=True)], params)

    # --- hires fix ------------------------------------------------------------------------------

    @staticmethod
    def _tiled(model: LoadedModel, hr: Hires) -> bool:
        if hr.tile is not None:
            return hr.tile
        return hr.width * hr.height > 4 * model.family.native**2

    def _hires(
        self,
        sd: Diffusion,
        hr: Hires,
        pixels: list[np.ndarray],
        latents: torch.Tensor,
        seeds: list[int],
        progress: Progress,
    ) -> list[np.ndarray]:
        """The second pass for the whole batch at once (image i from `pixels[i]`/`latents[i]`, seed `seeds[i]`)."""
        model, gen, ctx = sd.model, sd.gen, sd.ctx
        lw, lh = hr.width // 8, hr.height // 8
        if hr.upscaler in LATENT_UPSCALERS:
            mode = "nearest" if hr.upscaler == "latent-nearest" else "bilinear"
            init = F.interpolate(latents.float(), size=(lh, lw), mode=mode)
        else:
            init = torch.cat([denoise.encode_image(model, to_tensor(upscale(ctx, pix, hr))) for pix in pixels])
        cond, uncond = sd.encode()  # same job: LoRAs stay as activated
        guidance = denoise.Guidance(model, cond, uncond, gen.cfg, hr.width, hr.height)
        extra = _extra(model, hr.width, hr.height)
        if self._tiled(model, hr):
            model_fn = _tiled_fn(guidance, hr.strength, extra, ctx)
        else:
            model_fn = guidance.model_fn(extra, budget.per_call(model, lw, lh, cap=len(seeds)))
        spec = denoise.Run(gen.sampler, hr.steps, *denoise.seeded(seeds, (1, 4, lh, lw)), init, hr.strength)
        return _decode(model, denoise.sample(model, model_fn, spec, on_step=progress.step(model, len(seeds))))


def upscale(ctx: JobContext, pixels: np.ndarray, hr: Hires) -> np.ndarray:
    """First-pass pixels → target size, with PIL or a model upscaler from welcome.upscalers."""
    if hr.upscaler in PIXEL_UPSCALERS:
        return np.asarray(Image.fromarray(pixels).resize((hr.width, hr.height), PIXEL_UPSCALERS[hr.upscaler]))
    from ..models.upscaler import upscale_with  # model upscalers (spandrel)

    return upscale_with(ctx.models, hr.upscaler, pixels, (hr.width, hr.height), ctx.cancelled)


def _large(model: LoadedModel, width: int, height: int) -> bool:
    """Plain generate tiles beyond 2x the native side (one pass there repeats subjects and costs VRAM)."""
    return tiled.needs_tiling(model, width, height, factor=2.0)


def _model_fn(guidance: denoise.Guidance, strength: float, images: int, ctx: JobContext | None) -> denoise.ModelFn:
    """The batch's model call over the guidance's canvas: fused tiles beyond one pass, else whole images."""
    model, width, height = guidance.model, guidance.width, guidance.height
    extra = _extra(model, width, height)
    if _large(model, width, height):  # beyond one pass: the fused tiler (server.pipelines.tiled)
        return _tiled_fn(guidance, strength, extra, ctx)
    return guidance.model_fn(extra, budget.per_call(model, width // 8, height // 8, cap=images))


def _tiled_fn(
    guidance: denoise.Guidance, strength: float, extra: torch.Tensor | None, ctx: JobContext | None
) -> denoise.ModelFn:
    """Fused tiled model call over the guidance's canvas (one whole-canvas scheduler step per step,
    tiles blended; SDXL tiles conditioned with their crop offset in the canvas), as many tiles per
    UNet call as memory holds."""
    model = guidance.model
    lw, lh = guidance.width // 8, guidance.height // 8
    plan = tiled.plan_for(model, lw, lh, strength)
    if ctx is not None:
        ctx.plan({"tiles": len(plan), "tile": [plan.tile_w * 8, plan.tile_h * 8], "canvas": [lw * 8, lh * 8]})
    return tiled.model_fn(guidance, plan, extra=extra)


def _extra(model: LoadedModel, width: int, height: int) -> torch.Tensor | None:
    """9-channel inpaint UNets without a selection: mask everything, masked image = blank."""
    if not model.family.inpaint:
        return None
    blank = denoise.encode_image(model, torch.zeros(1, 3, height, width))
    mask = torch.ones(1, 1, height // 8, width // 8)
    return torch.cat([mask, blank.cpu()], 1).to(model.device, model.dtype)


def _decode(model: LoadedModel, latents: torch.Tensor) -> list[np.ndarray]:
    """Each image of the batch through the VAE on its own (VAE memory stays that of one image)."""
    return [to_pixels(denoise.decode_latents(model, latents[i : i + 1])[0], signed=False) for i in range(len(latents))]
