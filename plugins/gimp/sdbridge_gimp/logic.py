"""GIMP-independent decisions of the plug-in: procedure arguments -> typed request, where results go.

Nothing here imports `gi`, so it is unit-tested on the host without GIMP. What is not GIMP's own
comes from the shared client: `Canvas` and the checks (`actions`), the requests (`jobs`), canvas
changes, names and merging of results (`results`). The GIMP-facing module (`plugin.py`) only moves
pixels and calls the GIMP API according to what this module decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ._common import ActionError, actions, geometry, jobs, results
from .procs import ProcSpec

Canvas = actions.Canvas
Rect = geometry.Rect

PARASITE_NAME = "sdbridge-params"
LAYER_NAME_MAX = 80  # characters of the prompt in a layer name
NEEDS_SELECTION = "Inpaint needs a selection: select the area to repaint first (Select ▸ Rectangle…)."
RESULT_FORMAT = "rgba8"  # results go straight into a GEGL buffer: no PNG decoding in the plug-in's Python


@dataclass(frozen=True)
class Plan:
    """A request plus what is needed to place its result back into the image."""

    request: jobs.JobRequest
    target: Rect | None = None  # generate: where the (0,0)-based result goes, scaled to this size
    mask_result: bool = False  # generate with a selection: hide the result outside it (layer mask)


def _opt_str(values: dict[str, Any], name: str) -> str | None:
    value = str(values.get(name) or "").strip()
    return value or None


def sampling(values: dict[str, Any]) -> jobs.Sampling:
    """The sampling arguments of a procedure call (empty model/sampler = the server's default)."""
    return jobs.Sampling(
        prompt=str(values.get("prompt") or ""),
        negative=str(values.get("negative") or ""),
        model=_opt_str(values, "model"),
        seed=int(values.get("seed", -1)),
        steps=int(values["steps"]) if values.get("steps") is not None else None,
        cfg=float(values["cfg"]) if values.get("cfg") is not None else None,
        sampler=_opt_str(values, "sampler"),
    )


def _strength(values: dict[str, Any]) -> float | None:
    s = values.get("strength")
    return None if s is None else actions.clamp_strength(s)


def _batch(values: dict[str, Any]) -> int | None:
    n = int(values.get("batch") or 1)
    return n if n > 1 else None  # 1 is the server's default: leave it out


def _need_prompt(spec: ProcSpec, values: dict[str, Any]) -> None:
    if not str(values.get("prompt") or "").strip():
        raise ActionError(f"{spec.title}: the prompt is empty. Describe what to draw.")


def controls(
    values: dict[str, Any], control: bytes | None, canvas: Canvas, rect: Rect | None = None
) -> tuple[jobs.Control, ...]:
    """The control layer of the arguments (`control`: its pixels at the canvas's size, see
    `image_io.read_control`); `rect`: the part of the canvas the job draws."""
    model = _opt_str(values, "control-model")
    if control is None:
        if model is not None and "control-layer" in values:
            raise ActionError(f"Control model '{model}' is chosen: choose the control layer too (or no model).")
        return ()
    if model is None:
        raise ActionError("A control layer is chosen: choose its control model too (or no control layer).")
    strength = values.get("control-strength")
    layer = Canvas(canvas.w, canvas.h, control)
    pre = _opt_str(values, "control-preprocess")
    return (actions.control_layer(model, layer, None if strength is None else float(strength), pre, rect=rect),)


def plan_job(
    spec: ProcSpec, values: dict[str, Any], canvas: Canvas, max_pixels: int = 1 << 30, control: bytes | None = None
) -> Plan:
    """Turn procedure arguments + the image (+ the control layer's pixels) into a typed request (pure;
    raises ActionError)."""
    sel = canvas.selection_bounds()
    if spec.needs_selection and sel is None:
        raise ActionError(NEEDS_SELECTION)
    mask = canvas.mask() if sel is not None else None
    gen, strength, batch = sampling(values), _strength(values), _batch(values)
    kind = spec.kind
    ctl = controls(values, control, canvas, sel if kind == "generate" else None) if kind != "restore" else ()
    edit: dict[str, Any] = {"result_format": RESULT_FORMAT, "sampling": gen, "strength": strength, "batch": batch,
                            "controls": ctl}  # fmt: skip
    if kind == "generate":
        _need_prompt(spec, values)
        target = sel or Rect(0, 0, canvas.w, canvas.h)
        # The server snaps sizes to multiples of 8 itself; only shrink when over its pixel limit.
        # Either way the result is scaled to the target in GIMP (placement()).
        w, h = (target.w, target.h) if target.area <= max_pixels else geometry.fit_size(target.w, target.h, max_pixels)
        # img2img from what the user sees inside the target (alpha forced opaque: no holes in init)
        init = canvas.image(opaque=True, rect=target) if strength is not None and strength < 1.0 else None
        edit["strength"] = strength if init is not None else None
        # txt2img may be drawn smaller (pixel limit): the regions shrink with it; img2img is the init's size
        regions = canvas.region_list(rect=target, size=None if init is not None else (w, h))
        req = jobs.GenerateRequest(**edit, width=w, height=h, init=init, regions=regions)
        return Plan(req, target=target, mask_result=sel is not None)
    if kind in ("inpaint", "face"):  # the same fields: the image, the selection (face: optional), regions
        if kind == "inpaint":
            _need_prompt(spec, values)
        cls = jobs.InpaintRequest if kind == "inpaint" else jobs.FaceRequest
        return Plan(cls(**edit, image=canvas.image(), mask=mask, regions=canvas.region_list()))
    if kind == "outpaint":
        sides = outpaint_sides(values, sel)
        in_canvas = not any(sides.values())  # the server's mask form: fill the selection, canvas unchanged
        hole = mask if in_canvas else None
        pad = (sides["left"], sides["top"], sides["right"], sides["bottom"])
        regions = canvas.region_list(pad=pad)
        return Plan(jobs.OutpaintRequest(**edit, **sides, image=canvas.image(), mask=hole, regions=regions))
    if kind == "restore":
        fidelity, blend = values.get("fidelity"), values.get("blend")
        return Plan(
            jobs.RestoreRequest(
                result_format=RESULT_FORMAT,
                model=_opt_str(values, "restorer"),
                fidelity=None if fidelity is None else float(fidelity),
                blend=None if blend is None else float(blend),
                image=canvas.image(),
                mask=mask,
            )
        )
    if kind == "upscale":
        return Plan(
            jobs.UpscaleRequest(
                result_format=RESULT_FORMAT,
                sampling=gen,
                strength=strength,
                scale=float(values.get("scale") or 2.0),
                upscaler=_opt_str(values, "upscaler"),
                region=sel,
                image=canvas.image(),
                controls=ctl,
                regions=canvas.region_list(),
            )
        )
    raise ActionError(f"unknown job kind {kind!r}")


def regions_note(plan: Plan) -> str:
    """' with 2 regions (a red barn; stormy sky)' for status lines; '' without regions."""
    found = getattr(plan.request, "regions", ())
    if not found:
        return ""
    names = "; ".join(r.prompt for r in found)
    return f" with {len(found)} region{'s' if len(found) > 1 else ''} ({names})"


def outpaint_sides(values: dict[str, Any], selection: Rect | None) -> dict[str, int]:
    """Per-side extension from the arguments; all 0 is the in-canvas form and needs a selection."""
    sides = {s: max(0, int(values.get(s) or 0)) for s in geometry.SIDES}
    if not any(sides.values()) and selection is None:
        raise ActionError(
            "Outpaint: choose how many pixels to add on at least one side, or select the area to fill "
            "(at a canvas edge or over a transparent area)."
        )
    return sides


def check_model(values: dict[str, Any], welcome: dict[str, Any]) -> None:
    """Fail early, with the available names, when the chosen model is not on the server (a PDB call
    has nobody to pick another one, so it must not silently fall back to a default)."""
    if "restorer" in values:
        restorers = [str(r) for r in welcome.get("restorers") or []]
        chosen = _opt_str(values, "restorer")
        if not restorers:
            raise ActionError(
                "The sdbridge server has no face restorer. Put GFPGANv1.4.pth into its models folder's GFPGAN/ "
                "(or codeformer-v0.1.0.pth into Codeformer/)."
            )
        if chosen and chosen not in restorers:
            raise ActionError(f"Restorer '{chosen}' is not on the server. Available: {', '.join(restorers)}.")
        return
    control = _opt_str(values, "control-model")
    offered = [str(c.get("name")) for c in welcome.get("controls") or [] if isinstance(c, dict)]
    if control and control not in offered:
        raise ActionError(
            f"Control model '{control}' is not on the server. Available: {', '.join(offered) or 'none'} "
            "(ControlNets go into its models folder's ControlNet/, IP-Adapters into ipadapter/)."
        )
    model = _opt_str(values, "model")
    names = actions.model_names(welcome)
    if model and names and model not in names:
        raise ActionError(f"Model '{model}' is not on the server. Available models: {', '.join(names)}.")
    if not names:
        raise ActionError("The sdbridge server has no models. Put a checkpoint into its models folder.")


# --- results ---------------------------------------------------------------------------------


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


def params_parasite(kind: str, params: dict[str, Any]) -> bytes:
    """The parameters actually used, as JSON for a layer parasite (bytes values are dropped)."""
    return json.dumps({"kind": kind, **results.plain(params)}, sort_keys=True, ensure_ascii=False, default=str).encode()


def read_params_parasite(data: bytes) -> dict[str, Any]:
    return json.loads(bytes(data).decode())
