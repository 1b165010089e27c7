"""Editor-independent logic of the plugin actions: canvas state + settings -> job request, and a
job result -> the layer/canvas changes the adapter must apply.

Adapters gather a `Canvas` (pixels as straight RGBA, selection as gray8) from the editor, call a
`plan_*` function, submit the request, and later apply a `ResultPlan`. Everything here is unit
tested without an editor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import geometry, pixels, png
from .geometry import Rect
from .jobs import (
    FaceRequest,
    GenerateRequest,
    InpaintRequest,
    JobRequest,
    OutpaintRequest,
    RestoreRequest,
    UpscaleRequest,
    WireImage,
)
from .settings import Settings

ACTIONS = ("generate", "outpaint", "face", "restore", "upscale", "cancel")


class ActionError(Exception):
    """A user-facing reason why an action cannot run (shown in the docker, not a traceback)."""


@dataclass(frozen=True, slots=True)
class Canvas:
    """The document as the plugin sends it: straight RGBA of the visible projection."""

    w: int
    h: int
    rgba: bytes = field(repr=False)
    selection: bytes | None = field(default=None, repr=False)  # gray8 w*h, None = no selection

    def image(self, opaque: bool = False) -> WireImage:
        return WireImage.rgba(pixels.opaque(self.rgba) if opaque else self.rgba, self.w, self.h)

    def mask(self) -> WireImage:
        assert self.selection is not None
        return WireImage.gray(self.selection, self.w, self.h)

    def selection_bounds(self) -> Rect | None:
        if self.selection is None:
            return None
        r = geometry.mask_bounds(self.selection, self.w, self.h)
        return None if r.is_empty else r


def _sampling(s: Settings, welcome: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt": s.prompt,
        "negative": s.negative,
        "seed": s.seed if s.fixed_seed else -1,
        "steps": s.steps,
        "cfg": s.cfg,
    }
    samplers = (welcome or {}).get("samplers") or []
    if s.sampler and (not samplers or s.sampler in samplers):
        out["sampler"] = s.sampler
    models = [m.get("name") for m in (welcome or {}).get("models") or [] if isinstance(m, dict)]
    if s.model and (not models or s.model in models):
        out["model"] = s.model
    return out


def _max_pixels(welcome: dict[str, Any] | None) -> int:
    return int(((welcome or {}).get("limits") or {}).get("max_pixels") or 1 << 20)


def require_kind(kind: str, welcome: dict[str, Any] | None) -> None:
    jobs = (welcome or {}).get("jobs")
    if jobs is not None and kind not in jobs:
        raise ActionError(f"the server does not offer '{kind}' jobs (it offers: {', '.join(jobs) or 'none'})")


def plan_generate(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> JobRequest:
    """No selection: txt2img at canvas size (strength 1) or img2img of the canvas; else inpaint."""
    common = _sampling(s, welcome)
    if canvas.selection_bounds() is not None:
        require_kind("inpaint", welcome)
        return InpaintRequest(**common, strength=min(1.0, s.strength), image=canvas.image(), mask=canvas.mask())
    if canvas.selection is not None:
        raise ActionError("the selection is empty")
    require_kind("generate", welcome)
    if s.strength >= 1.0:
        w, h = (s.width or canvas.w), (s.height or canvas.h)
        w, h = geometry.fit_size(w, h, _max_pixels(welcome))
        return GenerateRequest(**common, width=w, height=h, batch=s.batch)
    return GenerateRequest(**common, strength=max(0.01, s.strength), batch=s.batch, init=canvas.image(opaque=True))


def plan_outpaint(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> OutpaintRequest:
    """Selection touching a canvas edge -> fill it in place (the user already made room, e.g. with
    Image ▸ Resize Canvas); no selection -> extend `outpaint_side` by `outpaint_pixels` and fill."""
    require_kind("outpaint", welcome)
    sel = canvas.selection_bounds()
    if sel is not None:
        if not geometry.touching_sides(sel, canvas.w, canvas.h):
            raise ActionError("the selection touches no canvas edge: use Generate to inpaint it, or deselect")
        return OutpaintRequest(**_sampling(s, welcome), image=canvas.image(), mask=canvas.mask())
    side, amount = s.outpaint_side, s.outpaint_pixels
    if side not in geometry.SIDES:
        raise ActionError(f"outpaint_side must be one of {', '.join(geometry.SIDES)}, not {side!r}")
    if amount <= 0:
        raise ActionError("outpaint_pixels must be positive")
    ext = geometry.extend_amounts(side, amount)  # type: ignore[arg-type]
    return OutpaintRequest(**_sampling(s, welcome), **ext, image=canvas.image())


def plan_face(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> FaceRequest:
    require_kind("face", welcome)
    mask = canvas.mask() if canvas.selection_bounds() is not None else None
    return FaceRequest(**_sampling(s, welcome), strength=s.face_strength, image=canvas.image(), mask=mask)


def plan_restore(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> RestoreRequest:
    require_kind("restore", welcome)
    mask = canvas.mask() if canvas.selection_bounds() is not None else None
    return RestoreRequest(model=s.restorer or None, image=canvas.image(), mask=mask)


def plan_upscale(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> UpscaleRequest:
    """No selection: the whole document ×scale. Selection: only that region re-rendered in detail."""
    require_kind("upscale", welcome)
    if s.upscale_scale <= 1.0:
        raise ActionError("upscale_scale must be above 1")
    region = canvas.selection_bounds()
    return UpscaleRequest(
        **_sampling(s, welcome),
        scale=s.upscale_scale,
        upscaler=s.upscaler or None,
        strength=s.upscale_strength,
        region=region,
        image=canvas.image(),
    )


PLANNERS: dict[str, Callable[[Canvas, Settings, dict[str, Any] | None], JobRequest]] = {
    "generate": plan_generate,
    "outpaint": plan_outpaint,
    "face": plan_face,
    "restore": plan_restore,
    "upscale": plan_upscale,
}


# --- applying results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LayerPatch:
    """One new layer: straight RGBA pixels placed at `rect` (canvas coordinates after resizing)."""

    name: str
    rect: Rect
    rgba: bytes = field(repr=False)
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class CanvasChange:
    """How the document must change before the layers are added.
    `scale`: resample existing content (upscale); else `origin` = where the old (0,0) lands (outpaint)."""

    w: int
    h: int
    scale: bool = False
    origin: tuple[int, int] = (0, 0)


@dataclass(frozen=True, slots=True)
class ResultPlan:
    group: str
    layers: tuple[LayerPatch, ...]
    canvas: CanvasChange | None
    record: dict[str, Any]  # what to store in the document's annotation history


Decoder = Callable[[dict[str, Any]], tuple[int, int, bytes]]


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


def short_prompt(prompt: str, limit: int = 40) -> str:
    text = " ".join(prompt.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def layer_name(request: JobRequest, seed: int | None) -> str:
    base = short_prompt(getattr(request, "prompt", "") or "") or request.kind
    return f"{base} ({seed})" if seed is not None else base


def plan_result(
    request: JobRequest, result: dict[str, Any], canvas_w: int, canvas_h: int, decode: Decoder = decode_image
) -> ResultPlan:
    params = result.get("params") or {}
    change: CanvasChange | None = None
    new = result.get("canvas")
    if isinstance(new, dict) and (new.get("w"), new.get("h")) != (canvas_w, canvas_h):
        nw, nh = int(new["w"]), int(new["h"])
        if isinstance(request, OutpaintRequest):
            change = CanvasChange(nw, nh, origin=(request.left, request.top))
        else:
            change = CanvasChange(nw, nh, scale=True)
    layers = []
    for img in result.get("images") or []:
        w, h, rgba = decode(img)
        seed = img.get("seed", params.get("seed"))
        seed = int(seed) if isinstance(seed, int) else None
        name = img.get("name") if isinstance(img.get("name"), str) and img.get("name") else layer_name(request, seed)
        layers.append(LayerPatch(name, Rect(int(img.get("x", 0)), int(img.get("y", 0)), w, h), rgba, seed))
    label = short_prompt(getattr(request, "prompt", "") or "") or request.kind
    record = {
        "job": result.get("id"),
        "kind": request.kind,
        "params": _plain(params),
        "layers": [p.name for p in layers],
    }
    return ResultPlan(f"sdbridge {request.kind}: {label}", tuple(layers), change, record)


def _plain(obj: Any) -> Any:
    """JSON-safe copy (bytes dropped) for annotations."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
