"""`outpaint`: extend the canvas (or fill a selection at its edge / a transparent area).

The new area is pre-filled from the border (OpenCV Telea/Navier-Stokes + blur), then generated as
img2img at high strength with a soft denoise mask that reaches `margin` px into the old image, so
the model blends across the seam. Regions larger than one model pass go through the fused tiler
(`masked.generate_masked`). Only the new strips plus the blend margin come back; the old pixels
farther than `margin` from the new area are untouched (alpha 0 / not returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from tiling.steps import steps_run

from ..imaging import control as cimg
from ..imaging.color import match_color
from ..imaging.compose import region_patches
from ..imaging.geometry import extract_crop, plan_inpaint, restore_crop
from ..imaging.masks import denoise_mask
from ..imaging.outpaint import Sides, extend_canvas, plan_outpaint, prefill, touching_sides, transparent_hole
from ..pipelines.tiled import needs_tiling
from ..protocol import Fields, ImageRef, ProtocolError
from .base import JobContext, JobResult, ParseContext, ResultImage
from .common import Diffusion, Progress
from .controls import fit_sizes
from .masked import EditRequest, crop_maps, crop_of, generate_masked, parse_edit, read_mask
from .regions import with_regions

PREFILLS = ("telea", "ns")


@dataclass(frozen=True, kw_only=True)
class OutpaintRequest(EditRequest):
    sides: Sides  # zero when the job works inside the canvas (selection / transparent area)
    hole: np.ndarray | None  # HxW uint8 (255 = fill) for the in-canvas form
    margin: int
    strength: float
    prefill: str
    color_match: bool


def margin_ramp(hole: np.ndarray, margin: int) -> np.ndarray:
    """Blend alpha for an in-canvas hole: 1 inside, ramping to 0 over `margin` px outside it
    (the same profile as `OutpaintPlan.blend_mask`)."""
    new = hole > 0
    if margin <= 0:
        return new.astype(np.float32)
    dist = cv2.distanceTransform((~new).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip((margin + 1 - dist) / (margin + 1), 0.0, 1.0).astype(np.float32)


class Outpaint:
    kind = "outpaint"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> OutpaintRequest:
        gen, image, batch = parse_edit(f, images, ctx, own_canvas=False)
        entry = ctx.models.entry(gen.model)
        sides = Sides(*(f.int(k, 0, lo=0, hi=8192) for k in ("left", "top", "right", "bottom")))
        hole = None
        sizes = [(image.shape[1], image.shape[0])]
        w, h = image.shape[1] + sides.left + sides.right, image.shape[0] + sides.top + sides.bottom
        if sides.any:
            sizes.append((w, h))
            if w * h > ctx.limits.max_pixels:
                raise ProtocolError(
                    "bad_field",
                    f"params.left/right/top/bottom: the extended canvas {w}x{h} exceeds the limit of "
                    f"{ctx.limits.max_pixels} pixels",
                    ctx.job_id,
                )
        elif "mask" in images:
            hole = selection_hole(image, read_mask(images, "mask", image, ctx), ctx.job_id)
        else:
            raise ProtocolError(
                "bad_field",
                "params.left/right/top/bottom: give at least one side > 0 (or a `mask` selection at a canvas "
                "edge or over a transparent area)",
                ctx.job_id,
            )
        gen = replace(gen, controls=fit_sizes(gen.controls, sizes, "the image or the extended canvas", ctx.job_id))
        return OutpaintRequest(
            gen=with_regions(gen, f, images, ctx, (w, h)),  # region masks are at the extended canvas
            image=image,
            batch=batch,
            sides=sides,
            hole=hole,
            margin=f.int("margin", 16, lo=0, hi=512),
            strength=f.float("strength", 1.0 if entry.family.endswith("inpaint") else 0.9, lo=0.01, hi=1.0),
            prefill=f.choice("prefill", PREFILLS, "telea"),
            color_match=f.bool("color_match", True),
        )

    def run(self, req: OutpaintRequest, ctx: JobContext) -> JobResult:
        sd = Diffusion(ctx, req.gen)
        model = sd.model
        rgb = np.ascontiguousarray(req.image[..., :3])
        canvas_size: tuple[int, int] | None = None
        if req.sides.any:
            plan = plan_outpaint((rgb.shape[1], rgb.shape[0]), req.sides, req.margin)
            canvas = extend_canvas(rgb, plan)
            hole = plan.fill_mask()
            blend = plan.blend_mask()
            regions = list(plan.regions)
            canvas_size = plan.canvas_size
        else:
            assert req.hole is not None
            canvas, hole = rgb, req.hole
            blend = margin_ramp(hole, req.margin)
            regions = []
        filled = prefill(canvas, hole, method=req.prefill)
        h, w = hole.shape
        # The context crop around the new area, at 1:1 or upscaled for a thin strip; never scaled down
        # for size: what exceeds one model pass is tiled.
        ip = plan_inpaint((w, h), hole, target=model.family.native, max_pixels=ctx.limits.max_pixels,
                          min_padding=req.margin + 16)  # fmt: skip
        ctx.plan({"crop": [ip.crop.x, ip.crop.y, ip.crop.w, ip.crop.h], "process_size": list(ip.process_size)})
        s = ip.scale
        strength_mask = denoise_mask(extract_crop(hole, ip), round(req.margin * s / 2), round(req.margin * s))
        progress = Progress(ctx, req.batch * steps_run(req.gen.steps, req.strength))
        # Old pixels beyond the margin are the colour reference: the model's drift there is pure tint.
        ring = margin_ramp(hole[ip.crop.slices], req.margin) > 0
        maps = crop_maps(_maps(sd, req, (rgb.shape[1], rgb.shape[0]), hole), ip)
        images = []
        for seed in req.seeds:
            crop = extract_crop(filled, ip)
            out = generate_masked(sd, crop, strength_mask, req.strength, seed, progress.step(model), maps, crop_of(ip))
            back = restore_crop(out, ip)
            if req.color_match:
                back = match_color(back, canvas[ip.crop.slices], ring)
            result = filled.copy()
            result[ip.crop.slices] = back
            patches = region_patches(result, blend, regions)
            images += [ResultImage(p.rect.x, p.rect.y, p.rgba, seed=seed) for p in patches]
        params: dict[str, Any] = req.gen.describe() | {
            "seeds": req.seeds,
            "strength": req.strength,
            "margin": req.margin,
            "prefill": req.prefill,
            "color_match": req.color_match,
            "crop": [ip.crop.x, ip.crop.y, ip.crop.w, ip.crop.h],
            "process_size": list(ip.process_size),
            "tiled": needs_tiling(model, *ip.process_size),
        }
        if req.sides.any:
            params |= {"left": req.sides.left, "top": req.sides.top, "right": req.sides.right,
                       "bottom": req.sides.bottom, "origin": [req.sides.left, req.sides.top]}  # fmt: skip
        return JobResult(images, params, canvas=canvas_size)


def _maps(
    sd: Diffusion, req: OutpaintRequest, image: tuple[int, int], hole: np.ndarray
) -> list[np.ndarray | None] | None:
    """The ControlNet images on the (extended) canvas: a layer of the image's size is placed where the
    image lands, nothing under the new area; the inpaint preprocessor marks the whole area to fill."""
    if sd.controls is None:
        return None
    canvas = (hole.shape[1], hole.shape[0])
    out: list[np.ndarray | None] = []
    for spec, m in zip(sd.controls.specs, sd.controls.maps([image, canvas], hole), strict=True):
        if m is not None and m.shape[:2] != hole.shape:
            m = cimg.placed(m, canvas, req.sides.left, req.sides.top)
        if m is not None and spec.preprocess.type == "inpaint":
            m[hole > 127] = -1.0
        out.append(m)
    return out


def selection_hole(image: np.ndarray, selection: np.ndarray, job_id: str) -> np.ndarray:
    """The in-canvas outpaint area: transparent pixels under the selection, else the selection itself
    when it touches a canvas edge. Anything else is an inpaint, and the error says so."""
    hole = transparent_hole(image, selection)
    if hole.all() or (selection > 0).all():
        raise ProtocolError(
            "bad_image", "images.mask: the selection covers the whole canvas: nothing to extend from", job_id
        )
    if hole.any():
        return hole
    if touching_sides(selection).any:
        return (selection > 0).astype(np.uint8) * 255
    raise ProtocolError(
        "bad_image",
        "images.mask: the selection touches no canvas edge and covers no transparent area: use `inpaint`",
        job_id,
    )
