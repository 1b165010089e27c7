"""Editor-independent handling of job results: decode the images, decide how the canvas changes,
name the layers, and keep a JSON-safe record of the parameters used.

The pieces (`canvas_change`, `layer_name`, `merge_pieces`, `plain`) serve both adapters: GIMP merges
an editing job's pieces into one layer, Krita's review history (`history`) one entry per batch image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import pixels, png
from .actions import ActionError
from .jobs import JobRequest, OutpaintRequest

NAME_LIMIT = 40  # characters of the prompt in a layer name


def decode_image(img: dict[str, Any], max_pixels: int = 1 << 26) -> tuple[int, int, bytes]:
    """Portable decoder for result/preview images -> (w, h, straight RGBA)."""
    fmt = img.get("format")
    data = img.get("data")
    if not isinstance(data, bytes):
        raise ActionError(f"image without data (format {fmt})")
    if fmt == "rgba8":
        return int(img["w"]), int(img["h"]), data
    if fmt == "gray8":
        return int(img["w"]), int(img["h"]), pixels.gray_to_rgba(data)
    if fmt == "png":
        return png.decode(data, max_pixels)
    raise ActionError(f"no decoder for {fmt} images in this editor")


Decoder = Callable[[dict[str, Any]], tuple[int, int, bytes]]


def short_prompt(prompt: str, limit: int = NAME_LIMIT) -> str:
    """Whitespace collapsed; a long prompt shortened with an ellipsis."""
    text = " ".join(prompt.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def layer_name(prompt: str, kind: str, seed: Any = None, part: str = "", limit: int = NAME_LIMIT) -> str:
    """`prompt (seed)`; without a prompt the kind and the server's name for the piece ("restore: face 1")."""
    text = short_prompt(prompt, limit) or (f"{kind}: {part}" if part else kind)
    return f"{text} ({seed})" if isinstance(seed, int) and not isinstance(seed, bool) else text


def batch_group_name(prompt: str, kind: str, seeds: list[int], limit: int = NAME_LIMIT) -> str:
    """The layer group holding a batch: `prompt (first–last seed)` (its layers are `prompt (seed)`)."""
    return f"{short_prompt(prompt, limit) or kind} ({seeds[0]}–{seeds[-1]})"


def batch_images(images: list[dict[str, Any]], params: dict[str, Any]) -> list[list[int]]:
    """A result's rects grouped by batch image (indices into `images`). Every kind sends the rects
    of batch image i (seed `params.seeds[i]`) after those of image i − 1, the same number for each
    (one per generated image, strip or face); anything else is one group."""
    n = len(params.get("seeds") or ())
    if n <= 1 or not images or len(images) % n:
        return [list(range(len(images)))]
    per = len(images) // n
    return [list(range(i * per, (i + 1) * per)) for i in range(n)]


@dataclass(frozen=True, slots=True)
class CanvasChange:
    """How the document must change before the result layers are added.
    `scale`: resample existing content (upscale); else `origin` = where the old (0,0) lands (outpaint)."""

    w: int
    h: int
    scale: bool = False
    origin: tuple[int, int] = (0, 0)


def canvas_change(request: JobRequest, result: dict[str, Any], old_w: int, old_h: int) -> CanvasChange | None:
    """Interpret a result's `canvas: {w, h}` (None when the canvas stays as it is)."""
    new = result.get("canvas")
    if not isinstance(new, dict):
        return None
    w, h = int(new.get("w") or old_w), int(new.get("h") or old_h)
    if (w, h) == (old_w, old_h):
        return None
    if isinstance(request, OutpaintRequest):
        # The old canvas sits after the left/top extension.
        return CanvasChange(w, h, origin=(request.left, request.top))
    return CanvasChange(w, h, scale=True)


def merge_pieces(pieces: list[tuple[int, int, int, int, bytes]]) -> tuple[int, int, int, int, bytes]:
    """Several result rects `(x, y, w, h, rgba)` of one editing job (outpaint strips, restored faces) as
    ONE RGBA image over their union, transparent between them; later pieces overwrite earlier ones
    (the server sends them in order, each already containing the ones before)."""
    x0 = min(p[0] for p in pieces)
    y0 = min(p[1] for p in pieces)
    x1 = max(p[0] + p[2] for p in pieces)
    y1 = max(p[1] + p[3] for p in pieces)
    w, h = x1 - x0, y1 - y0
    out = bytearray(w * h * 4)
    for x, y, pw, ph, rgba in pieces:
        for row in range(ph):
            dst = ((y - y0 + row) * w + (x - x0)) * 4
            out[dst : dst + pw * 4] = rgba[row * pw * 4 : (row + 1) * pw * 4]
    return x0, y0, w, h, bytes(out)


def plain(obj: Any) -> Any:
    """JSON-safe copy (bytes dropped) of result parameters, for annotations and parasites."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
