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
from ..imaging.geometry import extract_crop, restore_crop
from ..imaging.masks import denoise_mask
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, ResultImage, require_image
from .common import GenParams, parse_gen
from .masked import Progress, generate_masked, job_errors, read_mask

NO_FACES = "no faces found"


@dataclass(frozen=True)
class FaceRequest:
    gen: GenParams
    image: np.ndarray  # HxWx4 uint8
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


class FaceRerender:
    kind = "face"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> FaceRequest:
        with job_errors(ctx.job_id):
            return self._parse(f, images, ctx)

    def _parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> FaceRequest:
        gen = parse_gen(f, ctx, prompt_required=False)
        entry = ctx.models.entry(gen.model)
        image = require_image(images, "image", ctx)
        boxes = mask_boxes(read_mask(images, "mask", image, ctx)) if "mask" in images else None
        return FaceRequest(
            gen=gen,
            image=image,
            boxes=boxes,
            strength=f.float("strength", 0.4, lo=0.01, hi=1.0),
            target=f.int("target", entry.native, lo=64, hi=4096) // 8 * 8,
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
            "strength": req.strength,
            "target": req.target,
            "padding": req.padding,
            "color_match": req.color_match,
            "source": "mask" if req.boxes is not None else "detector",
            "faces": [[b.x, b.y, b.w, b.h] for b in boxes],
        }
        if not boxes:
            return JobResult([], params | {"messages": [NO_FACES]})
        model = ctx.models.get(req.gen.model)
        per_face = steps_run(req.gen.steps, req.strength)
        images = []
        for i, box in enumerate(boxes):
            plan = plan_face_crop(box, (w, h), target=req.target, padding=req.padding)
            crop = plan.crop
            local = box.relative_to(crop)
            paste = ellipse_mask((crop.w, crop.h), local)  # alpha at crop size, exactly 0 outside
            sel = cv2.resize(paste, plan.process_size, interpolation=cv2.INTER_LINEAR)  # same ellipse, process size
            feather = max(2, round(min(box.w, box.h) * plan.scale / 8))
            strength_mask = denoise_mask(sel, feather, feather)
            seed = (req.gen.seed + i) % 2**32
            progress = Progress(ctx, i * per_face, len(boxes) * per_face, model.family.xl)
            out = generate_masked(model, req.gen, extract_crop(rgb, plan), strength_mask, req.strength, seed, progress)
            back = restore_crop(out, plan)
            if req.color_match:
                back = match_color(back, rgb[crop.slices], (paste > 0).astype(np.uint8))
            patch = make_patch(back, paste, crop)
            if patch is not None:
                images.append(ResultImage(patch.rect.x, patch.rect.y, patch.rgba, seed=seed, name=f"face {i + 1}"))
        return JobResult(images, params)
