"""GIMP-independent logic of the plug-in: procedure specs, requests from arguments, result placement.

Nothing here imports `gi`, so it is unit-tested on the host without GIMP. The GIMP-facing module
(`plugin.py`) only moves pixels and calls the GIMP API according to what this module decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._common import geometry, jobs

Rect = geometry.Rect

PARASITE_NAME = "sdbridge-params"
DEFAULT_URL = "ws://127.0.0.1:8765/"
SEED_MAX = 2**31 - 1  # GIMP int arguments are gint; the server accepts up to 2**32-1
LAYER_NAME_MAX = 80


class PluginError(Exception):
    """A problem to show the user as-is (it names what went wrong and what to do)."""


# --- procedure specs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One procedure argument; `type` is "str", "int", "float" or "bool"."""

    name: str
    type: str
    nick: str
    blurb: str
    default: Any
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class ProcSpec:
    name: str  # PDB name
    kind: str  # protocol job kind
    label: str  # menu label
    blurb: str
    args: tuple[Arg, ...] = field(default=())
    needs_selection: bool = False


def _prompt_args(strength: float) -> tuple[Arg, ...]:
    return (
        Arg("prompt", "str", "Prompt", "What to draw (A1111 weighting syntax)", ""),
        Arg("negative", "str", "Negative prompt", "What to avoid", ""),
        Arg("seed", "int", "Seed", "-1 = random; the seed used is in the layer name", -1, -1, SEED_MAX),
        Arg("steps", "int", "Steps", "Sampling steps", 20, 1, 150),
        Arg("cfg", "float", "CFG scale", "Prompt guidance strength", 7.0, 0.0, 30.0),
        Arg("sampler", "str", "Sampler", "A1111 sampler name, e.g. 'Euler a' (empty = server default)", "Euler a"),
        Arg("strength", "float", "Strength", "Denoising strength (1.0 = repaint fully)", strength, 0.0, 1.0),
        Arg("model", "str", "Model", "Checkpoint name on the server (empty = server default)", ""),
    )


SERVER_ARGS: tuple[Arg, ...] = (
    Arg("server-url", "str", "Server URL", "sdbridge websocket URL", DEFAULT_URL),
    Arg("token", "str", "Token", "Access token, if the server requires one", ""),
    Arg("timeout", "int", "Timeout (s)", "Give up waiting for the result after this many seconds", 600, 5, 86400),
)
SIDE_ARGS: tuple[Arg, ...] = tuple(
    Arg(
        side,
        "int",
        f"Extend {side}",
        f"Pixels to add on the {side} (all 0 = fill the selection in place)",
        128 if side == "right" else 0,
        0,
        8192,
    )
    for side in geometry.SIDES
)

PROCS: tuple[ProcSpec, ...] = (
    ProcSpec(
        "sdbridge-generate",
        "generate",
        "_Generate…",
        "Generate a new layer from a prompt (img2img from the visible image when strength < 1; "
        "limited to the selection's bounds when there is one)",
        _prompt_args(1.0) + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-inpaint",
        "inpaint",
        "_Inpaint selection…",
        "Repaint the selected area from a prompt",
        _prompt_args(1.0) + SERVER_ARGS,
        needs_selection=True,
    ),
    ProcSpec(
        "sdbridge-outpaint",
        "outpaint",
        "_Outpaint…",
        "Extend the canvas on chosen sides and fill the new area (all sides 0: fill the selection in place, "
        "which should touch a canvas edge or cover a transparent area)",
        _prompt_args(0.9) + SIDE_ARGS + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-face",
        "face",
        "Re-render _face…",
        "Re-render the selected face (or detected faces) at detail resolution",
        _prompt_args(0.5) + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-restore",
        "restore",
        "_Restore faces…",
        "Run a face-restoration model (GFPGAN/CodeFormer) over detected faces (or the selected one)",
        (
            Arg("restorer", "str", "Restorer", "Restorer name on the server (empty = default)", ""),
            Arg("fidelity", "float", "Fidelity", "CodeFormer: 0 = quality, 1 = faithful to the input", 0.5, 0.0, 1.0),
            Arg("blend", "float", "Blend", "Opacity of the restored faces", 1.0, 0.0, 1.0),
        )
        + SERVER_ARGS,
    ),
    ProcSpec(
        "sdbridge-upscale",
        "upscale",
        "_Upscale…",
        "Upscale the image ×scale with tiled refine (with a selection: only its bounds are re-rendered)",
        _prompt_args(0.3)
        + (
            Arg("scale", "float", "Scale", "Upscale factor for the whole image", 2.0, 1.0, 8.0),
            Arg("upscaler", "str", "Upscaler", "Upscaler model on the server (empty = default)", ""),
        )
        + SERVER_ARGS,
    ),
)
PROCS_BY_NAME = {p.name: p for p in PROCS}


# --- inputs and requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What the plug-in read from GIMP: the visible canvas and the selection (None = no selection)."""

    rgba: bytes
    w: int
    h: int
    mask: bytes | None = None  # gray8, whole canvas
    selection: Rect | None = None  # bounds of the selection


@dataclass(frozen=True)
class Plan:
    """A request plus what is needed to place its result back into the image."""

    request: jobs.JobRequest
    target: Rect | None = None  # generate: where the (0,0)-based result goes, scaled to this size
    mask_result: bool = False  # generate with a selection: hide the result outside it (layer mask)


def _opt_str(values: dict[str, Any], name: str) -> str | None:
    value = str(values.get(name) or "").strip()
    return value or None


def _gen_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": str(values.get("prompt") or ""),
        "negative": str(values.get("negative") or ""),
        "model": _opt_str(values, "model"),
        "seed": int(values.get("seed", -1)),
        "steps": int(values["steps"]) if values.get("steps") is not None else None,
        "cfg": float(values["cfg"]) if values.get("cfg") is not None else None,
        "sampler": _opt_str(values, "sampler"),
    }


def _strength(values: dict[str, Any]) -> float | None:
    s = values.get("strength")
    if s is None:
        return None
    # The server wants 0 < s <= 1: a 0 from a slider means "barely", not "invalid request".
    return min(1.0, max(0.01, float(s)))


def _need_prompt(spec: ProcSpec, values: dict[str, Any]) -> None:
    if not str(values.get("prompt") or "").strip():
        raise PluginError(f"{spec.label.replace('_', '').rstrip('…')}: the prompt is empty. Describe what to draw.")


def plan_job(spec: ProcSpec, values: dict[str, Any], src: Source, max_pixels: int = 1 << 30) -> Plan:
    """Turn procedure arguments + the image into a typed request (pure; raises PluginError)."""
    image = jobs.WireImage.rgba(src.rgba, src.w, src.h)
    mask = jobs.WireImage.gray(src.mask, src.w, src.h) if src.mask is not None and src.selection else None
    if spec.needs_selection and src.selection is None:
        raise PluginError("Inpaint needs a selection: select the area to repaint first (Select ▸ Rectangle…).")
    kind = spec.kind
    if kind == "generate":
        _need_prompt(spec, values)
        target = src.selection or Rect(0, 0, src.w, src.h)
        # The server snaps sizes to multiples of 8 itself; only shrink when over its pixel limit.
        # Either way the result is scaled to the target in GIMP (placement()).
        w, h = (target.w, target.h) if target.area <= max_pixels else geometry.fit_size(target.w, target.h, max_pixels)
        strength = _strength(values)
        init = None
        if strength is not None and strength < 1.0:
            # img2img from what the user sees inside the target (alpha forced opaque: no holes in init)
            from ._common import pixels

            crop = pixels.crop(src.rgba, src.w, 4, target.x, target.y, target.w, target.h)
            init = jobs.WireImage.rgba(pixels.opaque(crop), target.w, target.h)
        req: jobs.JobRequest = jobs.GenerateRequest(
            **_gen_kwargs(values),
            width=w,
            height=h,
            strength=strength if init is not None else None,
            init=init,
        )
        return Plan(req, target=target, mask_result=src.selection is not None)
    if kind == "inpaint":
        _need_prompt(spec, values)
        return Plan(jobs.InpaintRequest(**_gen_kwargs(values), strength=_strength(values), image=image, mask=mask))
    if kind == "outpaint":
        sides = outpaint_sides(values, src)
        in_canvas = not any(sides.values())  # the server's mask form: fill the selection, canvas unchanged
        hole = mask if in_canvas else None
        req_ = jobs.OutpaintRequest(**_gen_kwargs(values), **sides, strength=_strength(values), image=image, mask=hole)
        return Plan(req_)
    if kind == "face":
        return Plan(jobs.FaceRequest(**_gen_kwargs(values), strength=_strength(values), image=image, mask=mask))
    if kind == "restore":
        fidelity, blend = values.get("fidelity"), values.get("blend")
        return Plan(
            RestoreRequest(
                model=_opt_str(values, "restorer"),
                fidelity=None if fidelity is None else float(fidelity),
                blend=None if blend is None else float(blend),
                image=image,
                mask=mask,
            )
        )
    if kind == "upscale":
        scale = float(values.get("scale") or 2.0)
        return Plan(
            jobs.UpscaleRequest(
                **_gen_kwargs(values),
                scale=scale,
                upscaler=_opt_str(values, "upscaler"),
                strength=_strength(values),
                region=src.selection,
                image=image,
            )
        )
    raise PluginError(f"unknown job kind {kind!r}")


def outpaint_sides(values: dict[str, Any], src: Source) -> dict[str, int]:
    """Per-side extension from the arguments; all 0 is the in-canvas form and needs a selection."""
    sides = {s: max(0, int(values.get(s) or 0)) for s in geometry.SIDES}
    if not any(sides.values()) and src.selection is None:
        raise PluginError(
            "Outpaint: choose how many pixels to add on at least one side, or select the area to fill "
            "(at a canvas edge or over a transparent area)."
        )
    return sides


@dataclass(frozen=True, slots=True)
class RestoreRequest(jobs.JobRequest):
    """`restore` as the server takes it (`model`, `fidelity`, `blend`); the shared
    `jobs.RestoreRequest` still has older field names (restorer/strength)."""

    kind: ClassVar[str] = "restore"
    model: str | None = None
    fidelity: float | None = None
    blend: float | None = None
    image: jobs.WireImage | None = field(default=None, metadata={"image": "image"})
    mask: jobs.WireImage | None = field(default=None, metadata={"image": "mask"})


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanvasChange:
    """How the image must change before result layers are placed."""

    w: int
    h: int
    dx: int = 0  # where the old canvas's origin lands in the new one (resize only)
    dy: int = 0
    scale: bool = False  # True: scale the existing layers (upscale); False: grow the canvas


def canvas_change(kind: str, canvas: Any, old_w: int, old_h: int, used: dict[str, Any]) -> CanvasChange | None:
    """Interpret a result's `canvas: {w, h}` (None when the canvas stays as it is)."""
    if not isinstance(canvas, dict):
        return None
    w, h = int(canvas.get("w") or old_w), int(canvas.get("h") or old_h)
    if (w, h) == (old_w, old_h):
        return None
    if kind == "upscale":
        return CanvasChange(w, h, scale=True)
    # Outpaint: the old canvas sits after the left/top extension (the params actually used).
    dx, dy = int(used.get("left") or 0), int(used.get("top") or 0)
    return CanvasChange(w, h, dx, dy)


@dataclass(frozen=True)
class Placement:
    """One result image: where its top-left goes and the size it must have there."""

    x: int
    y: int
    w: int
    h: int
    src_w: int
    src_h: int

    @property
    def needs_scale(self) -> bool:
        return (self.w, self.h) != (self.src_w, self.src_h)


def placement(plan: Plan, rect: dict[str, Any], img_w: int, img_h: int) -> Placement:
    """Where a result Rect goes: generate results are relative to the target; others are canvas rects."""
    if plan.target is not None:
        t = plan.target
        return Placement(t.x + int(rect.get("x") or 0), t.y + int(rect.get("y") or 0), t.w, t.h, img_w, img_h)
    return Placement(int(rect.get("x") or 0), int(rect.get("y") or 0), img_w, img_h, img_w, img_h)


def merge_pieces(pieces: list[tuple[int, int, int, int, bytes]]) -> tuple[int, int, int, int, bytes]:
    """Several result rects of one editing job (outpaint strips, restored faces) as ONE RGBA image over
    their union, transparent between them; later pieces overwrite earlier ones (the server sends them
    in order, each already containing the ones before). One job = one layer."""
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


def layer_name(kind: str, prompt: str, seed: Any, part: str = "") -> str:
    """`prompt (seed)`: whitespace collapsed, long prompts shortened; without a prompt the kind and the
    server's name for the piece (e.g. "restore: face 1")."""
    text = re.sub(r"\s+", " ", prompt or "").strip() or (f"{kind}: {part}" if part else kind)
    if len(text) > LAYER_NAME_MAX:
        text = text[: LAYER_NAME_MAX - 1].rstrip() + "…"
    return f"{text} ({seed})" if isinstance(seed, int) and not isinstance(seed, bool) else text


def params_parasite(kind: str, params: dict[str, Any]) -> bytes:
    """The parameters actually used, as JSON for a layer parasite (bytes values are dropped)."""
    clean = {k: v for k, v in params.items() if not isinstance(v, bytes | bytearray)}
    return json.dumps({"kind": kind, **clean}, sort_keys=True, ensure_ascii=False, default=str).encode()


def read_params_parasite(data: bytes) -> dict[str, Any]:
    return json.loads(bytes(data).decode())


def supported_kind(kind: str, welcome: dict[str, Any]) -> None:
    offered = welcome.get("jobs") or []
    if kind not in offered:
        raise PluginError(
            f"This sdbridge server does not offer '{kind}' jobs (it offers: {', '.join(offered) or 'none'}). "
            "Update the server."
        )


def check_model(values: dict[str, Any], welcome: dict[str, Any]) -> None:
    """Fail early, with the available names, when the chosen model is not on the server."""
    if "restorer" in values:
        restorers = [str(r) for r in welcome.get("restorers") or []]
        chosen = _opt_str(values, "restorer")
        if not restorers:
            raise PluginError(
                "The sdbridge server has no face restorer. Put GFPGANv1.4.pth into its models folder's GFPGAN/ "
                "(or codeformer-v0.1.0.pth into Codeformer/)."
            )
        if chosen and chosen not in restorers:
            raise PluginError(f"Restorer '{chosen}' is not on the server. Available: {', '.join(restorers)}.")
        return
    model = _opt_str(values, "model")
    names = [m.get("name") for m in welcome.get("models") or [] if isinstance(m, dict)]
    if model and names and model not in names:
        raise PluginError(f"Model '{model}' is not on the server. Available models: {', '.join(names)}.")
    if not names:
        raise PluginError("The sdbridge server has no models. Put a checkpoint into its models folder.")
