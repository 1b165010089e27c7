"""`params.regions`: a prompt per area of the canvas, parsed and checked before the job is queued.

Every diffusion job takes `regions: [{prompt, negative?, mask, strength?, loras?}]`: `mask` names an
image of the job's `images` map (`gray8` or any image, reduced by `images.to_gray`; soft values are
partial strength) of the job's canvas size. The job's own prompt conditions what no region covers.
Sampling is `pipelines.regions` (weights per call) + `pipelines.regionattn` (masked cross-attention).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from ..errors import JobError
from ..images import to_gray
from ..prompt import NetworkTag, extract_networks, validate
from ..protocol import Fields, ImageRef, ProtocolError
from .base import ParseContext

Place = Callable[[np.ndarray], np.ndarray]  # a canvas-size mask → the sampling canvas (crop, resize, pad)


@dataclass(frozen=True)
class RegionSpec:
    prompt: str
    negative: str | None  # None: the job's negative
    mask_name: str
    mask: np.ndarray = field(repr=False, compare=False)  # HxW float32 in [0, 1] at the job's canvas size
    strength: float = 1.0
    loras: tuple[NetworkTag, ...] = ()  # unet = weight on the whole canvas, te = this region's text only

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": self.prompt, "mask": self.mask_name, "strength": self.strength}
        if self.negative is not None:
            out["negative"] = self.negative
        if self.loras:
            out["loras"] = [{"name": t.name, "weight": t.unet, "te": t.te} for t in self.loras]
        return out


def parse_regions(
    f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext, sizes: Sequence[tuple[int, int]]
) -> tuple[RegionSpec, ...]:
    """`params.regions`, every mask checked against the canvas: `sizes` are the accepted (w, h), the
    first one named in errors (e.g. a txt2img canvas as asked and as rounded to 8)."""
    raw = f.data.get("regions")
    if raw is None:
        return ()
    where = f"{f.where}.regions"
    if not isinstance(raw, list):
        raise ProtocolError("bad_field", f"{where}: expected a list of region maps, got {type(raw).__name__}", f.job_id)
    limit = ctx.limits.max_regions
    if len(raw) > limit:
        why = f"{where}: {len(raw)} regions; the limit is {limit} (welcome.limits.max_regions)"
        raise ProtocolError("bad_field", why, f.job_id)
    decoded: dict[str, np.ndarray] = {}  # a mask several regions share is decoded once
    parsed = [_region(Fields(m, f"{where}[{i}]", f.job_id), images, ctx, sizes, decoded) for i, m in enumerate(raw)]
    # A region that covers nothing (all-zero mask, strength 0) is checked, then left out: the job is
    # exactly the job without it (its LoRAs included).
    return tuple(r for r in parsed if r.strength > 0 and r.mask.any())


def _region(
    rf: Fields,
    images: Mapping[str, ImageRef],
    ctx: ParseContext,
    sizes: Sequence[tuple[int, int]],
    decoded: dict[str, np.ndarray],
) -> RegionSpec:
    prompt = rf.str("prompt")
    negative = rf.str("negative", None)
    try:
        if not extract_networks(prompt)[0].strip():
            raise ProtocolError("bad_field", f"{rf.where}.prompt: empty; a region needs its own prompt", rf.job_id)
        validate(prompt, ctx.models, f"{rf.where.removeprefix('params.')}.prompt")
        if negative is not None:
            validate(negative, ctx.models, f"{rf.where.removeprefix('params.')}.negative", networks=False)
        entries = enumerate(_list(rf, "loras"))
        loras = tuple(_lora(Fields(m, f"{rf.where}.loras[{j}]", rf.job_id), ctx) for j, m in entries)
    except JobError as exc:  # unknown LoRA / embedding: the same code, the message says which region
        raise type(exc)(exc.message if rf.where in exc.message else f"{rf.where}: {exc.message}") from None
    name = rf.str("mask", max_len=256)
    if name not in images:
        known = ", ".join(sorted(images)) or "none"
        why = f"{rf.where}.mask: no image named {name!r} in images (have: {known})"
        raise ProtocolError("bad_field", why, rf.job_id)
    if name not in decoded:
        decoded[name] = to_gray(ctx.decode(name, images[name]))
    gray = decoded[name]
    if (gray.shape[1], gray.shape[0]) not in sizes:
        w, h = sizes[0]
        why = f"images.{name} ({rf.where}.mask) is {gray.shape[1]}x{gray.shape[0]}; the canvas is {w}x{h}"
        raise ProtocolError("bad_image", why, rf.job_id)
    mask = gray.astype(np.float32) / 255.0
    return RegionSpec(prompt, negative, name, mask, rf.float("strength", 1.0, lo=0.0, hi=1.0), loras)


def _list(rf: Fields, name: str) -> list[Any]:
    value = rf.data.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 16:
        raise ProtocolError("bad_field", f"{rf.where}.{name}: expected a list of at most 16 maps", rf.job_id)
    return value


def _lora(lf: Fields, ctx: ParseContext) -> NetworkTag:
    name = lf.str("name", max_len=512)
    ctx.models.asset("loras", name)  # unknown_model naming the available ones
    weight = lf.float("weight", 1.0, lo=-10.0, hi=10.0)
    return NetworkTag(name, weight, lf.float("te", weight, lo=-10.0, hi=10.0))


def with_regions(
    gen: Any, f: Fields, images: Mapping[str, ImageRef], ctx: ParseContext, *sizes: tuple[int, int]
) -> Any:
    """`gen` (GenParams) with the job's regions, masks checked against the canvas `sizes`."""
    return replace(gen, regions=parse_regions(f, images, ctx, sizes))


def resized(w: int, h: int) -> Place:
    """Place masks on a canvas of w x h (the job's canvas scaled, e.g. a hires pass)."""

    def place(mask: np.ndarray) -> np.ndarray:
        if (mask.shape[1], mask.shape[0]) == (w, h):
            return mask
        shrink = w * h < mask.shape[0] * mask.shape[1]
        out = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.clip(out, 0.0, 1.0)

    return place
