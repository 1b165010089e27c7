"""Regional prompts from the editor's layers: a prompt per area of the canvas (`params.regions`).

A region is a prompt plus a mask the size of the canvas: the editors take the mask from a layer's
alpha (GIMP: a layer named `region: a red barn`; Krita: its region list, from a selection or a layer
group). This module is editor-agnostic: the layer-name marker, masks from RGBA, and fitting masks
to the canvas a job draws (a crop for a generate inside a selection, padding for an outpaint).
Pure Python, no numpy: it runs in the editors' interpreters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .geometry import Rect
from .jobs import Region, WireImage
from .pixels import crop

MARKER = "region:"  # a layer whose name starts with this (any case) is a region; the rest is its prompt


def layer_prompt(name: str) -> str | None:
    """The prompt of a region layer ("region: a red barn" → "a red barn"); None for other layers."""
    text = name.strip()
    if not text.lower().startswith(MARKER):
        return None
    return text[len(MARKER) :].strip()


def alpha(rgba: bytes) -> bytes:
    """The alpha channel of straight RGBA bytes: a layer's coverage as a gray8 mask."""
    if len(rgba) % 4:
        raise ValueError(f"{len(rgba)} bytes is not a whole number of RGBA pixels")
    return rgba[3::4]


@dataclass(frozen=True, slots=True)
class RegionLayer:
    """A region as the editor has it: prompt, coverage at the canvas size (gray8), strength."""

    prompt: str
    mask: bytes = field(repr=False)
    strength: float | None = None  # None: the server's default (1.0); editors map layer opacity here
    negative: str | None = None
    name: str = ""  # the layer it came from, for messages

    def covers(self) -> bool:
        return self.mask.strip(b"\x00") != b""


def region_layer(name: str, rgba: bytes, opacity: float, negative: str | None = None) -> RegionLayer | None:
    """The region of one layer (name, canvas-size RGBA, opacity 0…1, its own negative prompt if any);
    None when it is no region layer or covers nothing."""
    prompt = layer_prompt(name)
    if prompt is None:
        return None
    strength = None if opacity >= 1.0 else max(0.0, opacity)
    layer = RegionLayer(prompt, alpha(rgba), strength, negative or None, name=name)
    return layer if layer.covers() else None


def from_layers(layers: Iterable[tuple[str, bytes, float]]) -> tuple[RegionLayer, ...]:
    """Region layers among (name, canvas-size RGBA, opacity 0…1) triples, top first; empty layers skipped."""
    found = (region_layer(name, rgba, opacity) for name, rgba, opacity in layers)
    return tuple(layer for layer in found if layer is not None)


def empty_prompts(layers: Iterable[RegionLayer]) -> list[str]:
    """Names of region layers without a prompt (the server would refuse them): say so before sending."""
    return [r.name or "region" for r in layers if not r.prompt]


Pad = tuple[int, int, int, int]  # left, top, right, bottom


def scale(mask: bytes, w: int, h: int, nw: int, nh: int) -> bytes:
    """A gray8 mask resized to nw x nh (nearest pixel): regions follow the canvas when the job draws
    it at another size (a txt2img snapped to multiples of 8, or shrunk to the server's pixel limit)."""
    xs = [min(w - 1, (2 * x + 1) * w // (2 * nw)) for x in range(nw)]
    rows: dict[int, bytes] = {}  # consecutive output rows often share a source row
    out = []
    for y in range(nh):
        sy = min(h - 1, (2 * y + 1) * h // (2 * nh))
        if sy not in rows:
            src = mask[sy * w : (sy + 1) * w]
            rows[sy] = bytes(map(src.__getitem__, xs))
        out.append(rows[sy])
    return b"".join(out)


def fit(
    layers: Iterable[RegionLayer],
    w: int,
    h: int,
    rect: Rect | None = None,
    pad: Pad = (0, 0, 0, 0),
    size: tuple[int, int] | None = None,
) -> tuple[Region, ...]:
    """The regions of a job whose canvas is `rect` of the w x h canvas (default: all of it), grown by
    `pad` = (left, top, right, bottom) transparent pixels (an outpaint's new canvas), drawn at `size`
    (default: that canvas's own size)."""
    rect = rect or Rect(0, 0, w, h)
    left, top, right, bottom = pad
    out = []
    for layer in layers:
        if len(layer.mask) != w * h:
            raise ValueError(f"region mask of {len(layer.mask)} bytes does not match the {w}x{h} canvas")
        mask = layer.mask if rect == Rect(0, 0, w, h) else crop(layer.mask, w, 1, rect.x, rect.y, rect.w, rect.h)
        mw, mh = rect.w, rect.h
        if any(pad):
            row = mw + left + right
            body = b"".join(b"\x00" * left + mask[y * mw : (y + 1) * mw] + b"\x00" * right for y in range(mh))
            mask, mw, mh = b"\x00" * (row * top) + body + b"\x00" * (row * bottom), row, mh + top + bottom
        if size is not None and size != (mw, mh):
            mask, mw, mh = scale(mask, mw, mh, *size), *size
        if not mask.strip(b"\x00"):
            continue  # nothing of it in this job's canvas
        out.append(Region(layer.prompt, WireImage.gray(mask, mw, mh), layer.negative, layer.strength))
    return tuple(out)
