"""`restore`: GFPGAN/CodeFormer-class face restoration (detect → align → restore → paste back).

The restorer file comes from the models tree (`welcome.restorers`); a missing one is a
`missing_model` error naming the file and the folder to put it in, raised at submit time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled
from ..imaging.faces import Face, detect_faces
from ..models.restorer import MissingRestorer, resolve_restorer, restore_faces
from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, Request, ResultImage, require_image
from .face import NO_FACES, parse_boxes


@dataclass(frozen=True, kw_only=True)
class RestoreRequest(Request):
    model: str
    path: Path
    image: np.ndarray  # HxWx4 uint8
    boxes: tuple[Any, ...] | None  # face boxes from a mask; None = detect
    fidelity: float
    blend: float


class Restore:
    kind = "restore"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> RestoreRequest:
        name = f.str("model", None, max_len=512)
        root = ctx.models.root
        if root is None:
            raise MissingRestorer(
                "the server has no models folder: start it with --models DIR and put a restorer "
                "(GFPGANv1.4.pth into DIR/GFPGAN or codeformer-v0.1.0.pth into DIR/Codeformer)"
            )
        path = resolve_restorer(Path(root), name)
        found = {p: n for n, p in ctx.models.assets.get("restorers", {}).items()}
        image = require_image(images, "image", ctx)
        return RestoreRequest(
            model=name or found.get(path, path.stem),
            path=path,
            image=image,
            boxes=parse_boxes(images, image, ctx),
            fidelity=f.float("fidelity", 0.5, lo=0.0, hi=1.0),
            blend=f.float("blend", 1.0, lo=0.0, hi=1.0),
        )

    def run(self, req: RestoreRequest, ctx: JobContext) -> JobResult:
        rgb = np.ascontiguousarray(req.image[..., :3])
        faces = [Face(b, 1.0) for b in req.boxes] if req.boxes is not None else detect_faces(rgb)
        params: dict[str, Any] = {
            "model": req.model,
            "fidelity": req.fidelity,
            "blend": req.blend,
            "faces": [[f.box.x, f.box.y, f.box.w, f.box.h] for f in faces],
        }
        if not faces:
            return JobResult([], params | {"messages": [NO_FACES]})
        desc = ctx.models.restorer(req.path)
        images = []
        out = rgb
        for i, face in enumerate(faces):
            if ctx.cancelled():
                raise Cancelled
            out, rects = restore_faces(out, desc, [face], blend=req.blend, fidelity=req.fidelity)
            ctx.progress(i + 1, len(faces), None)
            for r in rects:
                # Inside the rect, pixels the soft mask did not reach are the original (alpha 255 is exact).
                alpha = np.full((r.h, r.w, 1), 255, np.uint8)
                images.append(ResultImage(r.x, r.y, np.concatenate([out[r.slices], alpha], 2), name=f"face {i + 1}"))
        return JobResult(images, params)
