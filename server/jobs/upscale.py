"""`upscale`: upscale ×scale, then a fused tiled refine at low strength; optionally only a region.

Flow: upscaler model (spandrel, tiled) or Lanczos → tiled VAE encode of the part the selected tiles
read → fused tiled img2img (`server.pipelines.tiled`: keyed noise, one scheduler step per step for
the whole canvas, tiles culled to the selection) → low-frequency colour anchoring to the
pre-diffusion upscale → tiled VAE decode, each finished rectangle sent as a `partial` event → `result`.

Selections (`region` rectangle and/or soft `mask`) regenerate only the tiles touching the grown
selection; every pixel where the blend alpha is 0 is the upscaled image, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from tiling.geometry import Rect
from tiling.steps import steps_run

from ..errors import Cancelled
from ..imaging.compose import Patch, composite
from ..imaging.masks import blend_mask, changed_rect, denoise_mask, latent_mask, to_alpha
from ..imaging.tensors import to_tensor
from ..models.upscaler import upscale_with
from ..pipelines import tiled
from ..protocol import Fields, ImageRef, ProtocolError
from .base import JobContext, JobResult, ParseContext, Request, ResultImage, require_image
from .common import Diffusion, GenParams, parse_gen
from .controls import fit_sizes
from .masked import read_mask
from .regions import resized, with_regions

DEFAULT_STRENGTH = 0.35
GROW_PX, FEATHER_PX = 16, 16  # selection → denoise mask / blend alpha, in output pixels
ENCODE_PAD = 4  # latent px of VAE context around the area the tiles read / the changed area
OUTPUTS = ("auto", "full", "changed")
TILERS = ("fused", "naive")


@dataclass(frozen=True, kw_only=True)
class UpscaleRequest(Request):
    gen: GenParams
    image: np.ndarray  # HxWx4 uint8 source
    scale: float
    width: int  # output size (source × scale, rounded)
    height: int
    upscaler: str | None  # a welcome.upscalers name; None = Lanczos
    strength: float
    region: Rect | None  # source px
    mask: np.ndarray | None  # source-size soft selection, float [0, 1]
    tile: int | None  # output px (multiple of 64), None = the model's native size
    anchor: bool
    output: str  # "full" | "changed" (resolved from "auto")
    tiler: str

    @property
    def selective(self) -> bool:
        return self.region is not None or self.mask is not None


class Upscale:
    kind = "upscale"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> UpscaleRequest:
        gen = parse_gen(f, ctx, prompt_required=False, images=images)
        entry = ctx.models.entry(gen.model)
        if entry.family.endswith("inpaint"):
            raise ProtocolError(
                "bad_field",
                f"params.model: {gen.model!r} is an inpainting checkpoint; upscale refines with a regular model",
                ctx.job_id,
            )
        image = require_image(images, "image", ctx)
        h, w = image.shape[:2]
        gen = with_regions(gen, f, images, ctx, (w, h))  # region masks at the source size
        scale = f.float("scale", 2.0, lo=1.0, hi=8.0)
        ow, oh = max(8, round(w * scale)), max(8, round(h * scale))
        if ow * oh > ctx.limits.max_pixels:
            raise ProtocolError(
                "bad_field", f"params.scale: {ow}x{oh} exceeds the limit of {ctx.limits.max_pixels} pixels", ctx.job_id
            )
        controls = fit_sizes(gen.controls, [(w, h), (ow, oh)], "the image or the upscaled output", ctx.job_id)
        gen = replace(gen, controls=controls)
        upscaler = f.str("upscaler", None, max_len=512)
        if upscaler in ("", "lanczos"):
            upscaler = None
        if upscaler is not None:
            ctx.models.asset("upscalers", upscaler)  # unknown_model naming the available ones
        region = None
        if f.data.get("region") is not None:
            rf = Fields(f.map("region"), f"{f.where}.region", f.job_id)
            r = Rect(
                rf.int("x", lo=-(1 << 20), hi=1 << 20),
                rf.int("y", lo=-(1 << 20), hi=1 << 20),
                rf.int("w", lo=1, hi=1 << 20),
                rf.int("h", lo=1, hi=1 << 20),
            ).clamped(w, h)
            if r.is_empty:
                raise ProtocolError("bad_field", f"params.region: outside the {w}x{h} image", ctx.job_id)
            region = r
        mask = None
        if "mask" in images:
            mask = read_mask(images, "mask", image, ctx).astype(np.float32)
            if mask.max() > 1:
                mask /= 255.0
        tile = f.int("tile", None, lo=64, hi=4096)
        if tile is not None:
            tile = max(64, tile // 64 * 64)
        output = f.choice("output", OUTPUTS, "auto")
        req = UpscaleRequest(
            gen=gen,
            image=image,
            scale=scale,
            width=ow,
            height=oh,
            upscaler=upscaler,
            strength=f.float("strength", DEFAULT_STRENGTH, lo=0.0, hi=1.0),
            region=region,
            mask=mask,
            tile=tile,
            anchor=f.bool("anchor", True),
            output=output,
            tiler=f.choice("tiler", TILERS, "fused"),
        )
        if output == "auto":
            req = _replace(req, output="changed" if req.selective else "full")
        if req.tiler == "naive" and req.selective:
            raise ProtocolError("bad_field", "params.tiler: the naive baseline is whole-image only", ctx.job_id)
        if req.tiler == "naive" and req.gen.controls:
            raise ProtocolError("bad_field", "params.tiler: the naive baseline takes no controls", ctx.job_id)
        return req

    def run(self, req: UpscaleRequest, ctx: JobContext) -> JobResult:
        t0 = time.perf_counter()
        big = upscale_pixels(ctx, req)  # HxWx3 at the output size
        alpha = _alpha(req)
        params: dict[str, Any] = req.gen.describe() | {
            "scale": req.scale,
            "width": req.width,
            "height": req.height,
            "strength": req.strength,
            "upscaler": req.upscaler or "lanczos",
            "output": req.output,
        }
        if req.region is not None:
            params["region"] = {"x": req.region.x, "y": req.region.y, "w": req.region.w, "h": req.region.h}
        steps = denoise_steps(req)
        if steps == 0:  # upscaler only
            ctx.plan({"tiles": 0, "unet_evals": 0, "canvas": [req.width, req.height]})
            params |= {"tiles": 0, "unet_evals": 0, "seconds": round(time.perf_counter() - t0, 3)}
            return JobResult(
                [ResultImage(0, 0, _rgba(big, alpha), seed=req.gen.seed)], params, canvas=(req.width, req.height)
            )
        out = Refine(req, ctx, big, alpha).run(params)
        params["seconds"] = round(time.perf_counter() - t0, 3)
        return JobResult(out, params, canvas=(req.width, req.height))


def _replace(req: UpscaleRequest, **kw: Any) -> UpscaleRequest:
    from dataclasses import replace

    return replace(req, **kw)


def denoise_steps(req: UpscaleRequest) -> int:
    """0 when there is nothing to denoise (strength 0): the job is the upscaler alone."""
    if req.strength <= 0:
        return 0
    return steps_run(req.gen.steps, req.strength)


def upscale_pixels(ctx: JobContext, req: UpscaleRequest) -> np.ndarray:
    """Source RGB → output size with the upscaler model (repeated for larger factors) or Lanczos."""
    return upscale_with(ctx.models, req.upscaler, req.image[..., :3], (req.width, req.height), ctx.cancelled)


def _alpha(req: UpscaleRequest) -> np.ndarray | None:
    a = req.image[..., 3]
    if (a == 255).all():
        return None
    return np.asarray(Image.fromarray(a).resize((req.width, req.height), Image.Resampling.LANCZOS))


def _rgba(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    a = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else alpha
    return np.dstack([rgb, a])


def _selection(req: UpscaleRequest, pw: int, ph: int) -> np.ndarray | None:
    """The selection at the (8-padded) output size, float [0, 1]; None = the whole image."""
    if not req.selective:
        return None
    sel = np.ones((req.height, req.width), np.float32)
    if req.mask is not None:
        sel = cv2.resize(req.mask, (req.width, req.height), interpolation=cv2.INTER_LINEAR).clip(0, 1)
    if req.region is not None:
        r = req.region.scaled(req.scale).clamped(req.width, req.height)
        box = np.zeros_like(sel)
        box[r.slices] = 1
        sel = sel * box
    out = np.zeros((ph, pw), np.float32)
    out[: req.height, : req.width] = sel
    return out


class Refine:
    """The diffusion part of an upscale job (strength > 0)."""

    def __init__(self, req: UpscaleRequest, ctx: JobContext, big: np.ndarray, alpha: np.ndarray | None) -> None:
        self.req, self.ctx, self.big, self.alpha = req, ctx, big, alpha
        self.pw, self.ph = -(-req.width // 8) * 8, -(-req.height // 8) * 8
        # Replicate the edge up to a multiple of 8 for the VAE; the padding is cropped at the end.
        self.padded = np.pad(big, ((0, self.ph - req.height), (0, self.pw - req.width), (0, 0)), mode="edge")

    def _place(self, mask: np.ndarray) -> np.ndarray:
        """A source-size region mask on the output canvas, edge-replicated to the padded size."""
        big = resized(self.req.width, self.req.height)(mask)
        return np.pad(big, ((0, self.ph - self.req.height), (0, self.pw - self.req.width)), mode="edge")

    def run(self, params: dict[str, Any]) -> list[ResultImage]:
        req, ctx = self.req, self.ctx
        gen = req.gen
        sd = Diffusion(ctx, gen)
        model = sd.model
        lw, lh = self.pw // 8, self.ph // 8
        sel = _selection(req, self.pw, self.ph)
        keep = blend = None
        if sel is not None:
            if not sel.any():
                raise ProtocolError("bad_image", "the selection is empty: nothing to regenerate")
            keep = torch.from_numpy(latent_mask(denoise_mask(sel, GROW_PX, FEATHER_PX)))
            blend = blend_mask(sel, GROW_PX, FEATHER_PX)[: req.height, : req.width]
        plan = tiled.plan_for(model, lw, lh, req.strength, None if req.tile is None else req.tile // 8)
        guidance = sd.guidance(self.pw, self.ph, self._maps(sd), self._place)
        ts = tiled.TiledSampler(
            model, guidance, plan, gen.sampler, gen.steps, gen.seed, strength=req.strength, mask=keep
        )
        work = ts.work_rect()
        canvas_lat = Rect(0, 0, lw, lh)
        assert work is not None
        overlap = min((*plan.xs.overlaps, *plan.ys.overlaps), default=0) * 8
        info = {
            "tiles": ts.tiles,
            "tiles_in_plan": len(plan),
            "unet_evals": ts.unet_evals,
            "tile_steps": ts.tile_steps,
            "steps_run": len(ts.plans),
            "tile": [plan.tile_w * 8, plan.tile_h * 8],
            "overlap": overlap,
            "canvas": [req.width, req.height],
            "work": [work.x * 8, work.y * 8, work.w * 8, work.h * 8],
            "tiler": req.tiler,
        }
        ctx.plan(info)
        params |= {k: info[k] for k in ("tiles", "unet_evals", "tile", "overlap", "steps_run", "tiler")}
        params["anchor"] = req.anchor

        # Encode only what the evaluated tiles read (plus VAE context): cost follows the selection.
        enc = work.padded(ENCODE_PAD).intersection(canvas_lat)
        crop = self.padded[enc.y * 8 : enc.bottom * 8, enc.x * 8 : enc.right * 8]
        z0 = torch.zeros(1, 4, lh, lw, device=model.device)
        z0[..., enc.y : enc.bottom, enc.x : enc.right] = tiled.encode(model, to_tensor(crop))
        ts.init = z0
        progress = ctx.progress
        if req.tiler == "naive":
            latents = tiled.naive_sample(ts, progress, ctx.cancelled)
        else:
            latents = ts.run(progress, ctx.cancelled)
        if req.anchor:
            m = None if keep is None else keep[work.slices]
            ys, xs = work.slices
            latents = latents.clone()
            latents[..., ys, xs] = tiled.anchor(latents[..., ys, xs], z0[..., ys, xs], plan, m)
        return self._decode(model, latents, blend, canvas_lat)

    def _maps(self, sd: Diffusion) -> list[np.ndarray | None] | None:
        """The ControlNet images at the output size, edge-replicated to the padded canvas as the image is."""
        if sd.controls is None:
            return None
        pad = ((0, self.ph - self.req.height), (0, self.pw - self.req.width), (0, 0))
        maps = sd.controls.at((self.req.width, self.req.height))
        return [None if m is None else np.pad(m, pad, mode="edge") for m in maps]

    def _decode(
        self, model: Any, latents: torch.Tensor, blend: np.ndarray | None, canvas_lat: Rect
    ) -> list[ResultImage]:
        """Tiled decode of the changed area only, streaming each finished rectangle as a `partial`.

        Output "full": partials and result carry composited, opaque pixels (the source alpha, if
        any, upscaled). Output "changed": straight RGB of the regenerated pixels with the blend
        alpha, i.e. a layer for the editor to put over its own upscale of the image.
        """
        req, ctx, seed = self.req, self.ctx, self.req.gen.seed
        target = Rect(0, 0, req.width, req.height) if blend is None else changed_rect(blend)
        if target.is_empty:
            return [ResultImage(0, 0, _rgba(self.big, self.alpha), seed=seed)] if req.output == "full" else []
        a_blend = None if blend is None else to_alpha(blend)
        dec = tiled.latent_rect_for(target, 0 if blend is None else ENCODE_PAD, canvas_lat)
        out = self.big.copy()  # the composited full output
        raw = np.zeros((target.h, target.w, 3), np.uint8)  # decoded pixels inside the target
        full = req.output == "full"

        def place(rect_px: Rect, pixels: np.ndarray) -> None:
            if ctx.cancelled():
                raise Cancelled
            at = rect_px.shifted(dec.x * 8, dec.y * 8)
            part = at.intersection(target)
            if part.is_empty:
                return
            src = pixels[part.relative_to(at).slices]
            raw[part.relative_to(target).slices] = src
            if a_blend is None:
                out[part.slices] = src
            else:  # integer source-over: alpha 0 keeps the upscale bit-identical
                a = a_blend[part.slices]
                out[part.slices] = composite(
                    self.big[part.slices], Patch(Rect(0, 0, part.w, part.h), np.dstack([src, a]))
                )
            if full or a_blend is None:
                rgba = _rgba(out[part.slices], None if self.alpha is None else self.alpha[part.slices])
            else:
                rgba = np.dstack([src, a_blend[part.slices]])
            ctx.partial(ResultImage(part.x, part.y, rgba, seed=seed))

        tiled.decode(model, latents[..., dec.y : dec.bottom, dec.x : dec.right], on_rect=place)
        if full:
            return [ResultImage(0, 0, _rgba(out, self.alpha), seed=seed)]
        alpha = a_blend[target.slices] if a_blend is not None else np.full(raw.shape[:2], 255, np.uint8)
        return [ResultImage(target.x, target.y, np.dstack([raw, alpha]), seed=seed)]
