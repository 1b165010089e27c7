"""`preprocess`: a control image made from a layer by a built-in preprocessor, returned as a layer.

What an editor's "generate control image from canvas" calls: the same preprocessors (and options) a
job's `controls` run, without any model. CPU only; the result is the map as an opaque RGB layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..imaging import control
from ..models.controlnet import KINDS
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, Request, ResultImage, require_image
from .controls import Preprocess, parse_preprocess
from .masked import read_mask


@dataclass(frozen=True, kw_only=True)
class PreprocessRequest(Request):
    image: np.ndarray  # HxWx4 uint8 layer
    preprocess: Preprocess
    fill: np.ndarray | None  # inpaint: selection to mark as to be filled


class PreprocessJob:
    kind = "preprocess"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> PreprocessRequest:
        image = require_image(images, "image", ctx)
        if image.ndim == 2:
            image = np.dstack([image, image, image, np.full_like(image, 255)])
        kind = f.choice("kind", KINDS, None) if f.data.get("kind") is not None else None
        pre = parse_preprocess(f.data.get("preprocess", "auto"), f"{f.where}.preprocess", ctx.job_id, kind)
        fill = read_mask(images, "mask", image, ctx, allow_empty=True) if "mask" in images else None
        return PreprocessRequest(image=image, preprocess=pre, fill=fill)

    def run(self, req: PreprocessRequest, ctx: JobContext) -> JobResult:
        pre = req.preprocess
        opts = {"fill": req.fill} if pre.type == "inpaint" else dict(pre.options)
        rgb = control.to_display(control.preprocess(req.image, pre.type, **opts))
        h, w = rgb.shape[:2]
        rgba = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
        params = {"preprocess": pre.describe(), "width": w, "height": h}
        return JobResult([ResultImage(0, 0, rgba, name=f"control ({pre.type})")], params, canvas=(w, h))
