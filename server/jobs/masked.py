"""What the diffusion editing jobs (inpaint, outpaint, face re-render) share: the request fields
they all have (`EditRequest`), selection masks, and masked generation.

One `generate_masked` call denoises a processing-size RGB image with a soft per-pixel strength mask:

- regular checkpoints: img2img from the image's latents, re-imposing the (noised) original after
  every step where the mask is < 1 (`keep_mask`), so mask 0 keeps the original latents and
  fractional values give partial strength;
- 9-channel inpainting checkpoints: the UNet is also fed [mask, latents of the image with the
  selection blanked] natively, and `keep_mask` is still applied so unselected latents stay exact;
- regions larger than one model pass: the UNet call is the fused tiler's (`tiling.fused`), culled
  to tiles touching the mask, and the VAE runs tiled (`tiling.vae`) so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tiling.plan import overlap_for_strength, plan_tiles

from ..images import to_gray
from ..imaging.geometry import MaskError, check_mask
from ..imaging.masks import latent_mask
from ..imaging.tensors import to_pixels, to_tensor
from ..models.loader import LoadedModel
from ..pipelines import denoise
from ..pipelines import tiled as tiled_pipe
from ..protocol import Fields, ImageRef, ProtocolError
from .base import ParseContext, Request, require_image
from .common import Diffusion, GenParams, batch_seeds, parse_batch, parse_gen


@dataclass(frozen=True, kw_only=True)
class EditRequest(Request):
    """What the diffusion editing requests (inpaint, outpaint, face) have alike."""

    gen: GenParams
    image: np.ndarray  # HxWx4 uint8 canvas
    batch: int = 1  # alternative results, image i seeded gen.seed + i (as `generate`)

    @property
    def seeds(self) -> list[int]:
        return batch_seeds(self.gen.seed, self.batch)


def parse_edit(f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> tuple[GenParams, np.ndarray, int]:
    """The fields of an `EditRequest`: gen params (the prompt is optional), the `image`, the batch size."""
    return parse_gen(f, ctx, prompt_required=False), require_image(images, "image", ctx), parse_batch(f, ctx)


def _encode(model: LoadedModel, rgb: np.ndarray, tiled: bool) -> torch.Tensor:
    x = to_tensor(rgb)
    return tiled_pipe.encode(model, x) if tiled else denoise.encode_image(model, x)


def _decode(model: LoadedModel, latents: torch.Tensor, tiled: bool) -> np.ndarray:
    if tiled:
        return tiled_pipe.decode(model, latents)
    return to_pixels(denoise.decode_latents(model, latents)[0], signed=False)


def generate_masked(
    sd: Diffusion,
    image: np.ndarray,
    mask: np.ndarray,
    strength: float,
    seed: int,
    on_step: denoise.StepCallback | None = None,
) -> np.ndarray:
    """Denoise `image` (HxWx3 uint8, sides multiples of 8) where `mask` (HxW float [0, 1]) allows.

    Returns HxWx3 uint8 of the same size. Pixels with mask 0 come back as the VAE round trip of the
    original (the caller's blend mask keeps them out of the result anyway).
    """
    model, gen = sd.model, sd.gen
    h, w = image.shape[:2]
    tiled = tiled_pipe.needs_tiling(model, w, h)
    dev = model.device
    init = _encode(model, image, tiled)
    keep = torch.from_numpy(latent_mask(mask))[None, None].to(dev)
    extra = None
    if model.family.inpaint:
        # The inpainting UNet's own convention: mask 1 = fill, masked image = original with the
        # selection blanked (0 in [-1, 1], i.e. grey), both at latent resolution.
        hard = torch.from_numpy((mask > 0.5).astype(np.float32))[None, None]
        blanked = to_tensor(image) * (1 - hard)
        masked_latents = tiled_pipe.encode(model, blanked) if tiled else denoise.encode_image(model, blanked)
        small = F.interpolate(hard, size=init.shape[-2:], mode="area").to(dev)
        extra = torch.cat([small, masked_latents.to(dev)], 1).to(model.dtype)
    cond, uncond = sd.encode()
    guidance = denoise.Guidance(model, cond, uncond, gen.cfg, w, h)
    if tiled:
        tile = tiled_pipe.native_tile(model)
        plan = plan_tiles(init.shape[-1], init.shape[-2], tile, overlap_for_strength(tile, strength))
        model_fn = tiled_pipe.model_fn(guidance, plan, extra=extra, region=keep[0, 0])
    else:
        model_fn = guidance.model_fn(extra)
    spec = denoise.Run(gen.sampler, gen.steps, *denoise.seeded([seed], tuple(init.shape)), init, strength)
    latents = denoise.sample(model, model_fn, spec, keep_mask=keep, on_step=on_step)
    return _decode(model, latents, tiled)


def read_mask(
    images: Mapping[str, ImageRef], name: str, canvas: np.ndarray, ctx: ParseContext, *, allow_empty: bool = False
) -> np.ndarray:
    """Decode a selection mask (`gray8`, or any image → `images.to_gray`) and check it matches the canvas.

    Errors are `bad_image` naming both sizes, or saying the selection is empty.
    """
    h, w = canvas.shape[:2]
    mask = to_gray(ctx.decode(name, images[name]))
    try:
        mask = check_mask(mask, (w, h))
    except MaskError as exc:
        raise ProtocolError("bad_image", f"images.{name}: {exc}", ctx.job_id) from None
    if not allow_empty and not mask.any():
        raise ProtocolError(
            "bad_image", f"images.{name}: the selection mask is empty (all zero): select the area to edit", ctx.job_id
        )
    return mask
