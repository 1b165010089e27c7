"""`face`: re-render faces at the model's native resolution (ADetailer-like).

Faces come from the client's `mask` (one face per connected selected area) or from the offline
detector. Per face: a padded square crop → native resolution → img2img at `strength` with the face
prompt, denoising inside a feathered ellipse → colour match → scale back → returned as its own RGBA
rectangle with the feathered ellipse as alpha. No face is a message, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from tiling.geometry import Rect
from tiling.steps import steps_run

from ..imaging.color import match_color
from ..imaging.compose import make_patch
from ..imaging.faces import detect_faces, ellipse_mask, plan_face_crop
from ..imaging.geometry import InpaintPlan, extract_crop, restore_crop
from ..imaging.masks import denoise_mask
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, ResultImage
from .common import Diffusion, Progress
from .masked import EditRequest, crop_maps, crop_of, generate_masked, parse_edit, read_mask

NO_FACES = "no faces found"


@dataclass(frozen=True, kw_only=True)
class FaceRequest(EditRequest):
    boxes: tuple[Rect, ...] | None  # from the mask; None = detect at run time
    strength: float
    target: int
    padding: float
    max_faces: int
    color_match: bool


def mask_boxes(mask: np.ndarray) -> tuple[Rect, ...]:
    """One box per connected selected area, largest first."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    boxes = [Rect(int(x), int(y), int(w), int(h)) for x, y, w, h, _ in stats[1:n]]
    return tuple(sorted(boxes, key=lambda b: -b.area))


def parse_boxes(images: Mapping[str, ImageRef], image: np.ndarray, ctx: ParseContext) -> tuple[Rect, ...] | None:
    """Face boxes from the optional `mask` selection; None = no mask (detect faces when the job runs)."""
    return mask_boxes(read_mask(images, "mask", image, ctx)) if "mask" in images else None


@dataclass(frozen=True)
class _FaceCrop:
    """One face's crop plan, paste alpha (crop size) and denoise mask (process size)."""

    plan: InpaintPlan
    paste: np.ndarray
    strength_mask: np.ndarray

    @classmethod
    def around(cls, box: Rect, canvas: tuple[int, int], req: FaceRequest) -> _FaceCrop:
        plan = plan_face_crop(box, canvas, target=req.target, padding=req.padding)
        crop = plan.crop
        paste = ellipse_mask((crop.w, crop.h), box.relative_to(crop))  # exactly 0 outside the ellipse
        sel = cv2.resize(paste, plan.process_size, interpolation=cv2.INTER_LINEAR)  # same ellipse, process size
        feather = max(2, round(min(box.w, box.h) * plan.scale / 8))
        return cls(plan, paste, denoise_mask(sel, feather, feather))


class FaceRerender:
    kind = "face"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> FaceRequest:
        gen, image, batch = parse_edit(f, images, ctx)
        return FaceRequest(
            gen=gen,
            image=image,
            batch=batch,
            boxes=parse_boxes(images, image, ctx),
            strength=f.float("strength", 0.4, lo=0.01, hi=1.0),
            target=f.int("target", ctx.models.entry(gen.model).native, lo=64, hi=4096) // 8 * 8,
            padding=f.float("padding", 0.5, lo=0.0, hi=4.0),
            max_faces=f.int("max_faces", 8, lo=1, hi=64),
            color_match=f.bool("color_match", True),
        )

    def run(self, req: FaceRequest, ctx: JobContext) -> JobResult:
        rgb = np.ascontiguousarray(req.image[..., :3])
        h, w = rgb.shape[:2]
        boxes = list(req.boxes) if req.boxes is not None else [face.box for face in detect_faces(rgb)]
        boxes = boxes[: req.max_faces]
        params: dict[str, Any] = req.gen.describe() | {
            "seeds": req.seeds,
            "strength": req.strength,
            "target": req.target,
            "padding": req.padding,
            "color_match": req.color_match,
            "source": "mask" if req.boxes is not None else "detector",
            "faces": [[b.x, b.y, b.w, b.h] for b in boxes],
        }
        if not boxes:
            return JobResult([], params | {"messages": [NO_FACES]})
        sd = Diffusion(ctx, req.gen)
        model = sd.model
        crops = [_FaceCrop.around(box, (w, h), req) for box in boxes]
        progress = Progress(ctx, req.batch * len(boxes) * steps_run(req.gen.steps, req.strength))
        maps = sd.controls.at((w, h)) if sd.controls is not None else None
        images = []
        for b, image_seed in enumerate(req.seeds):
            for i, face in enumerate(crops):
                seed = (image_seed + i) % 2**32  # batch image b repeats as a batch-1 job seeded image_seed
                crop = face.plan.crop
                image = extract_crop(rgb, face.plan)
                on_step, face_maps = progress.step(model), crop_maps(maps, face.plan)
                out = generate_masked(
                    sd, image, face.strength_mask, req.strength, seed, on_step, face_maps, crop_of(face.plan)
                )
                back = restore_crop(out, face.plan)
                if req.color_match:
                    back = match_color(back, rgb[crop.slices], (face.paste > 0).astype(np.uint8))
                patch = make_patch(back, face.paste, crop)
                if patch is not None:
                    name = f"face {i + 1}" if req.batch == 1 else f"face {i + 1}, batch {b + 1}"
                    images.append(ResultImage(patch.rect.x, patch.rect.y, patch.rgba, seed=seed, name=name))
        return JobResult(images, params)
