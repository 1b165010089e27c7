"""`echo`: return the `image` unchanged — a transport round trip with no GPU work.

Plugins use it as a connection check; `bench/transport.py` uses it to measure what a canvas costs
on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..protocol import Fields, ImageRef
from .base import JobContext, JobResult, ParseContext, Request, ResultImage, require_image


@dataclass(frozen=True, kw_only=True)
class EchoRequest(Request):
    image: np.ndarray


class Echo:
    kind = "echo"

    def parse(self, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> EchoRequest:
        img = require_image(images, "image", ctx)
        if img.ndim == 2:  # gray8 comes back as opaque gray RGBA
            img = np.dstack([img, img, img, np.full_like(img, 255)])
        return EchoRequest(image=img)

    def run(self, req: EchoRequest, ctx: JobContext) -> JobResult:
        h, w = req.image.shape[:2]
        return JobResult([ResultImage(0, 0, req.image)], {"width": w, "height": h}, canvas=(w, h))
