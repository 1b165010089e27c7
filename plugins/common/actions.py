"""Editor-independent logic of the plugin actions: canvas state + settings -> job request.

Adapters gather a `Canvas` (pixels as straight RGBA, selection as gray8) from the editor and call a
`plan_*` function (or build a request from their own controls with the helpers here); `results`
turns what comes back into layer changes. Everything here is unit tested without an editor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import choices, geometry, pixels, regions
from .geometry import Rect
from .jobs import (
    Control,
    FaceRequest,
    GenerateRequest,
    InpaintRequest,
    JobRequest,
    OutpaintRequest,
    Region,
    RestoreRequest,
    Sampling,
    UpscaleRequest,
    WireImage,
)
from .settings import Settings


class ActionError(Exception):
    """A user-facing reason why an action cannot run: shown as-is (a docker line, a GIMP error
    message), never as a traceback. It names what went wrong and what to do."""


@dataclass(frozen=True, slots=True)
class Canvas:
    """The document as the plugin sends it: straight RGBA of the visible projection."""

    w: int
    h: int
    rgba: bytes = field(repr=False)
    selection: bytes | None = field(default=None, repr=False)  # gray8 w*h, None = no selection
    regions: tuple[regions.RegionLayer, ...] = ()  # region layers (prompt + coverage), see regions.py

    def region_list(
        self, rect: Rect | None = None, pad: regions.Pad = (0, 0, 0, 0), size: tuple[int, int] | None = None
    ) -> tuple[Region, ...]:
        """The regions of a job drawing `rect` of the canvas (default: all), grown by `pad` (outpaint),
        at `size` (default: as large as that part of the canvas)."""
        empty = regions.empty_prompts(self.regions)
        if empty:
            raise ActionError(f"region layer {empty[0]!r} has no prompt: name it 'region: what to draw there'")
        return regions.fit(self.regions, self.w, self.h, rect, pad, size)

    def image(self, opaque: bool = False, rect: Rect | None = None) -> WireImage:
        """The canvas (or the `rect` cut out of it); `opaque` forces alpha to 255 (img2img inits)."""
        rgba, w, h = self.rgba, self.w, self.h
        if rect is not None:
            rgba, w, h = pixels.crop(rgba, self.w, 4, rect.x, rect.y, rect.w, rect.h), rect.w, rect.h
        return WireImage.rgba(pixels.opaque(rgba) if opaque else rgba, w, h)

    def mask(self) -> WireImage:
        assert self.selection is not None
        return WireImage.gray(self.selection, self.w, self.h)

    def selection_bounds(self) -> Rect | None:
        if self.selection is None:
            return None
        r = geometry.mask_bounds(self.selection, self.w, self.h)
        return None if r.is_empty else r


# --- what the server offers (its welcome) --------------------------------------------------------


def require_kind(kind: str, welcome: dict[str, Any] | None) -> None:
    """Fail before sending a job the server does not offer (no welcome yet: the server will say)."""
    jobs = (welcome or {}).get("jobs")
    if jobs is not None and kind not in jobs:
        offered = ", ".join(jobs) or "none"
        raise ActionError(f"the sdbridge server does not offer '{kind}' jobs (it offers: {offered}); update the server")


def model_names(welcome: dict[str, Any] | None) -> list[str]:
    return [m.get("name") for m in (welcome or {}).get("models") or [] if isinstance(m, dict)]


def lora_tag(name: str, weight: float = 1.0) -> str:
    """The prompt tag that applies a LoRA (docs/protocol.md, prompt syntax)."""
    return f"<lora:{name}:{weight:g}>"


def insert_tag(prompt: str, tag: str) -> str:
    """`prompt` with `tag` appended once (a tag already there is left alone)."""
    if tag in prompt:
        return prompt
    return f"{prompt.rstrip()} {tag}" if prompt.strip() else tag


def strength_label(strength: float) -> str:
    """What the strength slider means: 100 % generates from scratch, below that refines what is there."""
    pct = round(clamp_strength(strength) * 100)
    return "Generate" if pct >= 100 else f"Refine {pct} %"


def max_pixels(welcome: dict[str, Any] | None) -> int:
    return int(((welcome or {}).get("limits") or {}).get("max_pixels") or 1 << 20)


def clamp_strength(strength: float) -> float:
    # The server wants 0 < s <= 1: a 0 from a slider means "barely", not "invalid request".
    return min(1.0, max(0.01, float(strength)))


def control_layer(
    model: str,
    layer: Canvas,
    strength: float | None = None,
    preprocess: str | None = None,
    start: float | None = None,
    end: float | None = None,
    rect: Rect | None = None,
) -> Control:
    """A control from a layer's pixels at canvas size (`layer.rgba`); `rect`: only that part of the canvas
    (a job on the selection's bounds). Transparent pixels stay transparent: the server reads them as
    "no structure" (or, for the inpaint preprocessor, as the area to fill)."""
    if not model:
        raise ActionError("choose a control model for the control layer (or no control layer)")
    if strength is not None and not 0.0 <= strength <= 2.0:
        raise ActionError(f"the control strength must be between 0 and 2, not {strength}")
    if start is not None and end is not None and start > end:
        raise ActionError(f"the control's range starts ({start:.2f}) after it ends ({end:.2f})")
    pre = preprocess or None
    return Control(model, layer.image(rect=rect), strength, start, end, None if pre == "none" else pre)


# --- settings -> request ---------------------------------------------------------------------------


def sampling(s: Settings, welcome: dict[str, Any] | None) -> Sampling:
    """Sampling parameters from the settings; a sampler/model the server lacks falls back to its default."""
    samplers = (welcome or {}).get("samplers") or []
    models = model_names(welcome)
    return Sampling(
        prompt=s.prompt,
        negative=s.negative,
        seed=s.seed if s.fixed_seed else -1,
        steps=s.steps,
        cfg=s.cfg,
        sampler=s.sampler if s.sampler and (not samplers or s.sampler in samplers) else None,
        schedule=schedule(s, welcome),
        model=s.model if s.model and (not models or s.model in models) else None,
        vae=s.vae if s.vae and (welcome is None or s.vae in choices.names(welcome, "vaes")) else None,
    )


def schedule(s: Settings, welcome: dict[str, Any] | None) -> str | None:
    """The schedule type to send: the chosen one when the server runs the sampler with it (no welcome
    yet: the server will say), else None (the server's `Automatic`), like a sampler it lacks."""
    if welcome is None:
        return s.schedule or None
    return s.schedule if s.schedule in choices.schedules(welcome, s.sampler) else None


def plan_generate(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> JobRequest:
    """No selection: txt2img at canvas size (strength 1) or img2img of the canvas; else inpaint."""
    common = sampling(s, welcome)
    strength = clamp_strength(s.strength)
    if canvas.selection_bounds() is not None:
        require_kind("inpaint", welcome)
        return InpaintRequest(
            sampling=common,
            strength=strength,
            batch=s.batch,
            image=canvas.image(),
            mask=canvas.mask(),
            regions=canvas.region_list(),
        )
    if canvas.selection is not None:
        raise ActionError("the selection is empty")
    require_kind("generate", welcome)
    if s.strength >= 1.0:
        w, h = (s.width or canvas.w), (s.height or canvas.h)
        w, h = geometry.fit_size(w, h, max_pixels(welcome))
        regions = canvas.region_list(size=(w, h))  # the regions stretch with the canvas to the size drawn
        return GenerateRequest(sampling=common, width=w, height=h, batch=s.batch, regions=regions)
    init = canvas.image(opaque=True)
    return GenerateRequest(sampling=common, strength=strength, batch=s.batch, init=init, regions=canvas.region_list())


def plan_outpaint(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> OutpaintRequest:
    """Selection touching a canvas edge -> fill it in place (the user already made room, e.g. with
    Image ▸ Resize Canvas); no selection -> extend `outpaint_side` by `outpaint_pixels` and fill."""
    require_kind("outpaint", welcome)
    sel = canvas.selection_bounds()
    if sel is not None:
        if not geometry.touching_sides(sel, canvas.w, canvas.h):
            raise ActionError("the selection touches no canvas edge: use Generate to inpaint it, or deselect")
        return OutpaintRequest(
            sampling=sampling(s, welcome),
            batch=s.batch,
            image=canvas.image(),
            mask=canvas.mask(),
            regions=canvas.region_list(),
        )
    side, amount = s.outpaint_side, s.outpaint_pixels
    if side not in geometry.SIDES:
        raise ActionError(f"outpaint_side must be one of {', '.join(geometry.SIDES)}, not {side!r}")
    if amount <= 0:
        raise ActionError("outpaint_pixels must be positive")
    ext = geometry.extend_amounts(side, amount)  # type: ignore[arg-type]
    regions = canvas.region_list(pad=(ext["left"], ext["top"], ext["right"], ext["bottom"]))
    return OutpaintRequest(sampling=sampling(s, welcome), batch=s.batch, **ext, image=canvas.image(), regions=regions)


def _selection_mask(canvas: Canvas) -> WireImage | None:
    return canvas.mask() if canvas.selection_bounds() is not None else None


def plan_face(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> FaceRequest:
    require_kind("face", welcome)
    return FaceRequest(
        sampling=sampling(s, welcome),
        strength=clamp_strength(s.face_strength),
        batch=s.batch,
        image=canvas.image(),
        mask=_selection_mask(canvas),
        regions=canvas.region_list(),
    )


def plan_restore(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> RestoreRequest:
    require_kind("restore", welcome)
    return RestoreRequest(model=s.restorer or None, image=canvas.image(), mask=_selection_mask(canvas))


def plan_upscale(canvas: Canvas, s: Settings, welcome: dict[str, Any] | None = None) -> UpscaleRequest:
    """No selection: the whole document ×scale. Selection: only that region re-rendered in detail."""
    require_kind("upscale", welcome)
    if s.upscale_scale <= 1.0:
        raise ActionError("upscale_scale must be above 1")
    return UpscaleRequest(
        sampling=sampling(s, welcome),
        strength=s.upscale_strength,
        scale=s.upscale_scale,
        upscaler=s.upscaler or None,
        region=canvas.selection_bounds(),
        image=canvas.image(),
        regions=canvas.region_list(),
    )


PLANNERS: dict[str, Callable[[Canvas, Settings, dict[str, Any] | None], JobRequest]] = {
    "generate": plan_generate,
    "outpaint": plan_outpaint,
    "face": plan_face,
    "restore": plan_restore,
    "upscale": plan_upscale,
}
