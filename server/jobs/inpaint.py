"""`inpaint`: regenerate the selected part of a canvas, returning only the changed rectangle.

Three masks from the editor's soft selection: the context crop around it (`plan_inpaint`), the
denoise mask (grown + feathered: per-pixel strength during sampling) and the blend mask (alpha of
the returned rectangle). A small selection is generated at the model's native "detail" resolution
and scaled back. Pixels outside the blend mask are untouched by construction (alpha 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from tiling.steps import steps_run

from ..imaging.color import match_color
from ..imaging.compose import make_patch
from ..imaging.geometry import extract_crop, plan_inpaint, restore_crop
from ..imaging.masks import blend_mask, denoise_mask, grow
from ..imaging.outpaint import prefill
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, ResultImage, require_image
from .common import Diffusion, Progress
from .masked import EditRequest, crop_maps, crop_of, generate_masked, parse_edit, read_mask

FILLS = ("original", "blur", "telea", "ns")


@dataclass(frozen=True, kw_only=True)
class InpaintRequest(EditRequest):
    mask: np.ndarray  # HxW uint8 selection
    strength: float
    target: int
    grow: int
    feather: int
    fill: str
    color_match: bool


def fill_selection(rgb: np.ndarray, selection: np.ndarray, fill: str) -> np.ndarray:
    """The init pixels under the selection: the original, a heavy blur of it, or an OpenCV inpaint."""
    if fill == "original":
        return rgb
    hole = selection > 127
    if not hole.any() or hole.all():
        return rgb
    if fill == "blur":
        out = rgb.copy()
        sigma = max(4.0, min(rgb.shape[:2]) / 16)
        out[hole] = cv2.GaussianBlur(rgb, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)[hole]
        return out
    return prefill(rgb, hole, method=fill)


class Inpaint:
    kind = "inpaint"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> InpaintRequest:
        gen, image, batch = parse_edit(f, images, ctx)
        entry = ctx.models.entry(gen.model)
        if "mask" not in images:
            require_image(images, "mask", ctx)
        mask = read_mask(images, "mask", image, ctx)
        inpaint_model = entry.family.endswith("inpaint")
        return InpaintRequest(
            gen=gen,
            image=image,
            batch=batch,
            mask=mask,
            strength=f.float("strength", 1.0 if inpaint_model else 0.75, lo=0.01, hi=1.0),
            target=f.int("target", entry.native, lo=64, hi=4096) // 8 * 8,
            grow=f.int("grow", 8, lo=0, hi=256),
            feather=f.int("feather", 8, lo=0, hi=256),
            fill=f.choice("fill", FILLS, "original"),
            color_match=f.bool("color_match", True),
        )

    def run(self, req: InpaintRequest, ctx: JobContext) -> JobResult:
        sd = Diffusion(ctx, req.gen)
        model = sd.model
        h, w = req.mask.shape
        rgb = np.ascontiguousarray(req.image[..., :3])
        plan = plan_inpaint((w, h), req.mask, target=req.target, min_padding=max(16, req.grow + req.feather + 8))
        ctx.plan({"crop": list(_xywh(plan.crop)), "process_size": list(plan.process_size), "scale": plan.scale})
        sel = extract_crop(req.mask, plan)  # uint8 selection at processing size
        # Grow/feather are canvas pixels; at detail resolution they scale with the crop.
        s = plan.scale
        strength_mask = denoise_mask(sel, round(req.grow * s), round(req.feather * s))
        init = fill_selection(extract_crop(rgb, plan), sel, req.fill)
        progress = Progress(ctx, req.batch * steps_run(req.gen.steps, req.strength))
        orig = rgb[plan.crop.slices]
        sel_crop = req.mask[plan.crop.slices]
        alpha = blend_mask(sel_crop, req.grow, req.feather)
        # Colour is measured on a ring outside what the blend mask can show: there the result should equal the original.
        ring = (grow(sel_crop, req.grow) > 0).astype(np.uint8)
        maps = crop_maps(sd.controls.at((w, h), req.mask) if sd.controls is not None else None, plan)
        images = []
        for seed in req.seeds:
            on_step = progress.step(model)
            out = generate_masked(sd, init, strength_mask, req.strength, seed, on_step, maps, crop_of(plan))
            back = restore_crop(out, plan)
            if req.color_match:
                back = match_color(back, orig, ring)
            patch = make_patch(back, alpha, plan.crop)
            if patch is not None:
                images.append(ResultImage(patch.rect.x, patch.rect.y, patch.rgba, seed=seed))
        params: dict[str, Any] = req.gen.describe() | {
            "seeds": req.seeds,
            "strength": req.strength,
            "target": req.target,
            "grow": req.grow,
            "feather": req.feather,
            "fill": req.fill,
            "color_match": req.color_match,
            "crop": list(_xywh(plan.crop)),
            "process_size": list(plan.process_size),
            "inpaint_model": model.family.inpaint,
        }
        return JobResult(images, params)


def _xywh(r: Any) -> tuple[int, int, int, int]:
    return r.x, r.y, r.w, r.h
