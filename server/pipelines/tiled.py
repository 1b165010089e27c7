"""Fused tiled sampling for canvases larger than one model pass (upscale refine, large generate, hires).

One reusable pipeline over the pure `tiling` library:

- `plan_for`: an exact-fit uniform tile plan (latent px) at the model's native tile size, overlap
  growing with strength;
- `TiledSampler`: the denoising loop with every UNet call replaced by the fused tiler
  (`tiling.fused`: tiles batched, outputs blended by partition-of-unity windows, ONE scheduler
  step for the whole canvas, so multistep samplers keep one consistent history), noise keyed to
  the global latent position (`tiling.noise`, also for the per-step noise of ancestral samplers),
  per-step grid jitter, selection culling (only tiles touching the latent mask are evaluated;
  latents outside it end bit-identical to `init`), per-tile SDXL crop micro-conditioning, progress
  counted in tile UNet evaluations and cancel checked between tile batches;
- `encode` / `decode`: tiled VAE passes (memory bounded by the tile) for a latent rectangle of the
  canvas, the decode streaming each finished pixel rectangle to a callback;
- `anchor`: low-frequency colour anchoring of the result to the pre-diffusion latents.

Units: `TilePlan`s and masks are in latent px; pixel rectangles are 8x those (`LATENT`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from tiling.color import anchor_low_frequency
from tiling.fused import TileRef, fused_model_output
from tiling.geometry import Rect
from tiling.noise import keyed_noise, step_stream, step_with_noise
from tiling.plan import TilePlan, overlap_for_strength, plan_tiles
from tiling.selection import select_tiles
from tiling.vae import tiled_decode, tiled_encode

from ..errors import Cancelled
from ..imaging.tensors import to_pixels
from ..models.loader import LoadedModel
from ..samplers import STOCHASTIC, make_scheduler
from . import budget, denoise
from .preview import Preview, lazy_preview

LATENT = 8  # VAE downscale factor of every SD family
JITTER_MIN_STEPS = 6  # below this few steps a moving grid has nothing to spread seams over
# A canvas is tiled once a side exceeds this many native passes (tiling costs overlap, so a
# slightly larger canvas is cheaper in one pass; beyond ~2x native models also repeat subjects).
TILE_ABOVE = 1.5

Progress = Callable[[int, int, Preview], None]


def needs_tiling(model: LoadedModel, width: int, height: int, factor: float = TILE_ABOVE) -> bool:
    """Whether a `width` x `height` px canvas is beyond what the model draws well in one pass."""
    limit = model.family.native * factor
    return width > limit or height > limit


def native_tile(model: LoadedModel) -> int:
    """Default UNet tile (latent px): the model's native size (SD1.5 512 px, SDXL 1024 px)."""
    return max(8, model.family.native // LATENT)


def plan_for(
    model: LoadedModel,
    width_lat: int,
    height_lat: int,
    strength: float,
    tile: int | None = None,
    overlap: int | None = None,
) -> TilePlan:
    """The tile plan for a latent canvas; `tile`/`overlap` in latent px (default: chosen, by strength).

    Without an explicit `tile`, nominal tiles from native up to `max_tile_factor` x native are
    tried and the plan with the least total tile area (UNet cost per step) wins: tile sizes are
    multiples of 8 latent px, so a canvas that does not divide well can cost up to ~25% more
    at native size than one size up. Larger tiles are only allowed at low strength, where the
    init image holds the composition (no repeated subjects).
    """
    native = native_tile(model)
    if tile is not None:
        t = max(8, tile)
        ov = overlap_for_strength(t, strength) if overlap is None else max(2, min(overlap, t // 2))
        return plan_tiles(width_lat, height_lat, t, ov)
    top = native if strength > 0.5 else int(native * max_tile_factor(model))
    best: TilePlan | None = None
    for t in range(native, max(native, top) + 1, 8):
        ov = overlap_for_strength(t, strength) if overlap is None else max(2, min(overlap, t // 2))
        cand = plan_tiles(width_lat, height_lat, t, ov)
        if best is None or len(cand) * cand.tile_w * cand.tile_h < len(best) * best.tile_w * best.tile_h:
            best = cand
    assert best is not None
    return best


def max_tile_factor(model: LoadedModel) -> float:
    """Largest automatic tile over native: SD1.5 768 px, SDXL 1280 px (img2img at low strength)."""
    return 1.25 if model.family.xl else 1.5


def vae_tiles(model: LoadedModel) -> dict[str, int]:
    """VAE tile/overlap (latent px): one native pass per tile; tiny test models get at least 16."""
    tile = max(16, model.family.native // LATENT)
    return {"tile": tile, "overlap": max(2, tile // 8)}


def tile_kwargs(guidance: denoise.Guidance, refs: Sequence[TileRef]) -> dict[str, Any]:
    """UNet kwargs for a batch of tiles, with SDXL micro-conditioning per tile.

    Each tile is conditioned as a crop of the whole canvas: original size = the canvas
    (`guidance.width/height`), crop top-left = the tile's pixel offset, target size = the tile.
    That is what SDXL saw in training for crops, so a tile is not drawn as a complete picture.
    """
    kw = guidance.unet_kwargs(len(refs))
    fam = guidance.model.family
    if not fam.xl:
        return kw
    h, w = guidance.height, guidance.width
    if fam.refiner:
        scores = [2.5, 6.0] if guidance.use_cfg else [6.0]
        rows = [[h, w, r.y * LATENT, r.x * LATENT, s] for s in scores for r in refs]
    else:
        parts = 2 if guidance.use_cfg else 1
        rows = [[h, w, r.y * LATENT, r.x * LATENT, r.h * LATENT, r.w * LATENT] for _ in range(parts) for r in refs]
    ids = torch.tensor(rows, dtype=guidance.model.dtype, device=guidance.model.device)
    kw["added_cond_kwargs"] = {**kw["added_cond_kwargs"], "time_ids": ids}
    return kw


@dataclass
class TiledSampler:
    """One fused tiled denoising run over a latent canvas (batch 1).

    `init`: scaled latents [1, 4, h, w] (img2img from `strength`), or None (txt2img).
    `mask`: latent-resolution soft mask [h, w] (1 = denoise, 0 = keep `init`); only tiles touching
    `mask > 0` are evaluated and latents where it is 0 come back bit-identical to `init`.
    `extra`: channels concatenated for 9-channel inpainting UNets, cropped per tile.
    Construct it, read `tiles`/`unet_evals` for the plan event, then `run`.
    """

    model: LoadedModel
    guidance: denoise.Guidance
    plan: TilePlan
    sampler: str
    steps: int
    seed: int
    init: torch.Tensor | None = None
    strength: float = 1.0
    mask: torch.Tensor | None = None
    extra: torch.Tensor | None = None
    batch: int | None = None  # tiles per UNet call (CFG doubles it); None: what free memory holds
    jitter: bool | None = None  # None: on when the run has >= JITTER_MIN_STEPS steps
    img2img: bool = True  # False: txt2img (init is ignored, all steps run)
    plans: list[TilePlan] = field(init=False)
    active: list[tuple[int, ...]] = field(init=False)

    def __post_init__(self) -> None:
        if self.batch is None:
            self.batch = budget.per_call(self.model, self.plan.tile_w, self.plan.tile_h)
        # The schedule is known before the init latents are: callers use `work_rect` to encode
        # only the part of the canvas the selected tiles read, then set `init` and `run`.
        scheduler = make_scheduler(self.sampler, self.model.scheduler_config)
        n = len(denoise.timesteps_for(scheduler, self.steps, self._strength, torch.device("cpu")))
        jitter = n >= JITTER_MIN_STEPS if self.jitter is None else self.jitter
        self.plans = [self.plan.jittered(self.seed, i) if jitter else self.plan for i in range(n)]
        if self.mask is not None:
            self.mask = self.mask.to(self.model.device, torch.float32)
            self.active = [select_tiles(p, self.mask) for p in self.plans]
        else:
            self.active = [tuple(range(len(p))) for p in self.plans]

    @property
    def _strength(self) -> float:
        return self.strength if self.img2img else 1.0

    @property
    def cfg_factor(self) -> int:
        return 2 if self.guidance.use_cfg else 1

    @property
    def tiles(self) -> int:
        """Tiles evaluated per step (the first step; jitter may change it by a few)."""
        return len(self.active[0]) if self.active else 0

    @property
    def tile_steps(self) -> int:
        """Tile-sized UNet evaluations without CFG doubling (comparable with other tilers' formulas)."""
        return sum(len(a) for a in self.active)

    @property
    def unet_evals(self) -> int:
        """Tile-sized UNet evaluations the run makes, CFG's second branch counted: the progress total."""
        return self.tile_steps * self.cfg_factor

    def work_rect(self) -> Rect | None:
        """Latent bounding box of every tile any step evaluates (None: nothing selected)."""
        rects = [p.tiles[i] for p, act in zip(self.plans, self.active, strict=True) for i in act]
        if not rects:
            return None
        x0, y0 = min(r.x for r in rects), min(r.y for r in rects)
        return Rect(x0, y0, max(r.right for r in rects) - x0, max(r.bottom for r in rects) - y0)

    def run(self, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> torch.Tensor:
        """Denoise; returns the final scaled latents [1, 4, h, w] (float32)."""
        h, w = self.plan.height, self.plan.width
        if self.img2img and (self.init is None or tuple(self.init.shape[-2:]) != (h, w)):
            raise ValueError(f"img2img needs init latents of the plan's size {(h, w)}")
        noise = keyed_noise(self.seed, 4, (h, w))[None]
        gen = torch.Generator("cpu").manual_seed(self.seed)
        init = self.init if self.img2img else None
        batch = self.batch or 1
        st = denoise.start(self.model, denoise.Run(self.sampler, self.steps, noise, [gen], init, self._strength))
        assert st.total == len(self.plans)
        scheduler, total = st.scheduler, self.unet_evals
        stochastic = self.sampler in STOCHASTIC
        step_kw = st.step_kwargs() if stochastic else {}
        latents, init, noise = st.latents, st.init, st.noise
        keep = None if self.mask is None else self.mask[None, None]
        done = 0
        for i in range(st.index, st.total):
            t = st.timesteps[i]
            x = scheduler.scale_model_input(latents, t)

            def per_tile(tiles: torch.Tensor, refs: Sequence[TileRef], t: torch.Tensor = t) -> torch.Tensor:
                nonlocal done
                if cancelled is not None and cancelled():
                    raise Cancelled
                ex = None
                if self.extra is not None:
                    ex = torch.stack([self.extra[0, :, r.y : r.bottom, r.x : r.right] for r in refs])
                out = self.guidance.guided(tiles, t, ex, tile_kwargs(self.guidance, refs))
                done += len(refs) * self.cfg_factor
                if progress is not None:
                    progress(min(done, total), total, None)
                return out

            eps = fused_model_output(x, per_tile, self.plans[i], batch, region_weights=self.mask)
            if stochastic:
                shape = tuple(latents.shape[-2:])
                step_noise = keyed_noise(self.seed, latents.shape[1], shape, stream=step_stream(i))
                latents = _step_keyed(scheduler, eps, t, latents, step_noise[None].to(latents.device), step_kw)
            else:
                latents = scheduler.step(eps, t, latents).prev_sample
            if keep is not None and init is not None:
                ahead = st.timesteps[i + 1 : i + 2]
                ref = scheduler.add_noise(init, noise, ahead) if len(ahead) else init
                latents = ref + (latents - ref) * keep
            st.latents, st.index = latents, i + 1
            if progress is not None:
                progress(min(done, total), total, lazy_preview(latents, self.model.family.xl))
        return latents


def naive_sample(
    ts: TiledSampler, progress: Progress | None = None, cancelled: Callable[[], bool] | None = None
) -> torch.Tensor:
    """The tiler peers ship, for comparisons only (benchmarks, seam tests): every tile of `ts.plan`
    img2img'd on its own, drawn as a whole picture with the same seed, hard-pasted at cell borders."""
    from tiling.naive import naive_paste

    if ts.init is None or not ts.img2img or ts.mask is not None:
        raise ValueError("the naive baseline is whole-canvas img2img only")
    g = replace(ts.guidance, width=ts.plan.tile_w * LATENT, height=ts.plan.tile_h * LATENT)
    per_tile = len(ts.plans)
    total, done = len(ts.plan) * per_tile * ts.cfg_factor, 0

    def one(tile: torch.Tensor, _rect: Rect) -> torch.Tensor:
        nonlocal done

        def on_step(_i: int, _n: int, latents: torch.Tensor) -> None:
            nonlocal done
            if cancelled is not None and cancelled():
                raise Cancelled
            done += ts.cfg_factor
            if progress is not None:
                progress(min(done, total), total, lazy_preview(latents, ts.model.family.xl))

        spec = denoise.Run(ts.sampler, ts.steps, *denoise.seeded([ts.seed], tuple(tile.shape)), tile, ts.strength)
        return denoise.sample(ts.model, g.model_fn(), spec, on_step=on_step)

    return naive_paste(ts.init, one, ts.plan).to(ts.init.device)


def _step_keyed(
    scheduler: Any, eps: torch.Tensor, t: Any, latents: torch.Tensor, noise: torch.Tensor, step_kw: dict[str, Any]
) -> torch.Tensor:
    try:
        return step_with_noise(scheduler, eps, t, latents, noise, **step_kw).prev_sample
    except TypeError:  # a scheduler that does not draw through randn_tensor: its own seeded generator
        return scheduler.step(eps, t, latents, **step_kw).prev_sample


def model_fn(
    guidance: denoise.Guidance,
    plan: TilePlan,
    *,
    extra: torch.Tensor | None = None,
    batch: int | None = None,
    on_tiles: Callable[[int], None] | None = None,
    region: torch.Tensor | None = None,
) -> denoise.ModelFn:
    """A drop-in `denoise.ModelFn` doing the fused tiled call on a fixed grid.

    For callers that keep their own loop (`denoise.sample` / `denoise.run`); `on_tiles(n)` is told
    how many tiles each UNet batch evaluated. With `region` (latent-resolution mask [h, w]), only
    tiles touching it are evaluated (the caller's keep mask pins everything else). `batch`: tiles per
    UNet call (None: as many as free memory holds).
    """
    per_call = budget.per_call(guidance.model, plan.tile_w, plan.tile_h) if batch is None else batch

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        def per_tile(tiles: torch.Tensor, refs: Sequence[TileRef]) -> torch.Tensor:
            ex = None if extra is None else torch.stack([extra[0, :, r.y : r.bottom, r.x : r.right] for r in refs])
            out = guidance.guided(tiles, t, ex, tile_kwargs(guidance, refs))
            if on_tiles is not None:
                on_tiles(len(refs))
            return out

        return fused_model_output(x, per_tile, plan, per_call, region_weights=region)

    return call


# --- VAE --------------------------------------------------------------------------------------


@torch.no_grad()
def encode(model: LoadedModel, rgb: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1] (sides multiples of 8) -> scaled latents, tiled VAE (exact when it fits)."""
    z = tiled_encode(model.vae, rgb.to(model.device, model.vae_dtype), **vae_tiles(model))
    return z.float() * model.vae_scale


@torch.no_grad()
def decode(
    model: LoadedModel, latents: torch.Tensor, on_rect: Callable[[Rect, np.ndarray], None] | None = None
) -> np.ndarray:
    """Scaled latents [1, 4, h, w] -> HxWx3 uint8 (8h x 8w), tiled VAE.

    `on_rect(rect_px, pixels)` gets every output rectangle (uint8, latent-crop coordinates x8) as
    soon as no later tile can change it; the rectangles tile the whole output.
    """
    z = (latents / model.vae_scale).to(model.device, model.vae_dtype)

    def tile_done(rect: Rect, pixels: torch.Tensor) -> None:
        if on_rect is not None:
            on_rect(rect, to_pixels(pixels[0]))

    img = tiled_decode(model.vae, z, on_tile=tile_done if on_rect is not None else None, **vae_tiles(model))
    return to_pixels(img[0])


def anchor(
    result: torch.Tensor, reference: torch.Tensor, plan: TilePlan, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Low-frequency anchoring in latent space: keep the result's detail, the reference's broad colour.

    Done on latents (before decoding) so every streamed tile is already final. sigma = tile/8
    latent px (= tile_px/8 / 8 px): tile-correlated drift lives below that frequency, detail above.
    `mask` limits the correction (latents where it is 0 stay exactly as they are).
    """
    sigma = max(2.0, max(plan.tile_w, plan.tile_h) / 8)
    m = None if mask is None else mask.to(result.device, torch.float32)
    return anchor_low_frequency(result.float(), reference.float().to(result.device), sigma, m)


def latent_rect_for(px: Rect, pad: int, canvas_lat: Rect) -> Rect:
    """The latent rectangle covering pixel rect `px`, grown by `pad` latent px, inside the canvas."""
    return px.scaled(1 / LATENT).padded(pad).intersection(canvas_lat)  # scaled rounds outward: covers px
