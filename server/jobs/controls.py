"""The `controls` of a diffusion job: ControlNet maps and IP-Adapter references, parsed and checked
before the job is queued, made into control images when it runs.

`params.controls` is a list of `{model, image, strength = 1, start = 0, end = 1, preprocess = "none",
kind?}`; `image` names an entry of the job's `images`. A ControlNet's image must have the size of the
canvas the job works on (each job says which sizes it accepts); an IP-Adapter's reference image may
have any size. See docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import ModelLoadError
from ..imaging import control as images
from ..models.controlnet import KINDS
from ..models.controls import base_family
from ..models.ipadapter import IPAdapterEntry, install
from ..models.loader import LoadedModel
from ..pipelines.control import ControlNetHook, Hook, IPAdapterHook, Reference, control_tensor, reference_embeds
from ..protocol import Fields, ImageRef, ProtocolError
from .base import JobContext, ParseContext

MAX_CONTROLS = 8
# What `preprocess: "auto"` runs for a kind (kinds without one take the image as it is).
AUTO = {
    "canny": "canny",
    "scribble": "scribble",
    "lineart": "lineart",
    "lineart_anime": "lineart",
    "softedge": "softedge",
    "tile": "tile",
    "inpaint": "inpaint",
}
FAMILY_NAMES = {"sd15": "SD1.5", "sd2": "SD2", "sdxl": "SDXL"}


@dataclass(frozen=True)
class Preprocess:
    """A preprocessor of `imaging.control` and its options (already range-checked)."""

    type: str = "none"
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str | dict[str, Any]:
        return {"type": self.type, **self.options} if self.options else self.type


def parse_preprocess(value: Any, where: str, job_id: str, kind: str | None) -> Preprocess:
    """`"canny"` or `{type: "canny", low: 50, high: 150}`; `"auto"` = the kind's own preprocessor."""
    f = Fields({"type": value} if isinstance(value, str) else value, where, job_id)
    ptype = f.choice("type", (*images.PREPROCESSORS, "auto"))
    if ptype == "auto":
        ptype = AUTO.get(kind or "", "none")
    opts: dict[str, Any] = {}
    if ptype == "canny":
        opts = {"low": f.int("low", 100, lo=0, hi=255), "high": f.int("high", 200, lo=0, hi=255)}
        if opts["low"] > opts["high"]:
            raise ProtocolError("bad_field", f"{where}.low: {opts['low']} is above high {opts['high']}", job_id)
    elif ptype in ("lineart", "scribble"):
        opts = {"threshold": f.float("threshold", 0.5, lo=0.0, hi=1.0)}
        if f.data.get("invert") is not None:
            opts["invert"] = f.bool("invert")
        if ptype == "scribble":
            opts["width"] = f.int("width", 3, lo=1, hi=64)
    elif ptype == "softedge":
        opts = {"sigma": f.float("sigma", 1.5, lo=0.1, hi=32.0)}
    elif ptype == "tile":
        opts = {"downscale": f.float("downscale", 1.0, lo=1.0, hi=16.0)}
    elif ptype == "blur":
        opts = {"sigma": f.float("sigma", 2.0, lo=0.0, hi=64.0)}
    return Preprocess(ptype, opts)


@dataclass(frozen=True)
class ControlSpec:
    """One control of a request: which model, which image, how strongly, over which part of the run."""

    model: str
    type: str  # controlnet | ipadapter
    image_name: str
    image: np.ndarray = field(repr=False)  # the decoded layer, HxWx4 uint8
    strength: float
    start: float
    end: float
    preprocess: Preprocess
    kind: str | None
    canvas: int = 0  # which of the job's canvases the image is (a scaled copy of): see `fit_sizes`

    def control_image(self, size: tuple[int, int], fill: np.ndarray | None = None) -> np.ndarray:
        """The ControlNet input at `size` (w, h), HxWx3 float32: the layer brought to the canvas's size
        first, so the preprocessors work at the resolution the model sees (`fill`: a selection of that
        size the inpaint preprocessor also marks to be filled)."""
        layer = images.layer_at(self.image, size)
        if self.preprocess.type == "inpaint":
            return images.inpaint(layer, fill)
        return images.preprocess(layer, self.preprocess.type, **self.preprocess.options)

    def reference(self) -> np.ndarray:
        """An IP-Adapter's reference picture, HxWx3 uint8."""
        return np.ascontiguousarray(self.image[..., :3])

    def describe(self) -> dict[str, Any]:
        out = {"model": self.model, "type": self.type, "image": self.image_name, "strength": self.strength}
        out |= {"start": self.start, "end": self.end, "preprocess": self.preprocess.describe()}
        if self.kind is not None:
            out["kind"] = self.kind
        return out


def parse_controls(
    f: Fields, images_in: Mapping[str, ImageRef], ctx: ParseContext, checkpoint_family: str
) -> tuple[ControlSpec, ...]:
    """`params.controls`, every model/name/range checked and every image decoded (sizes are checked
    by the job, which knows its canvas: `check_sizes`)."""
    raw = f.data.get("controls")
    if raw is None:
        return ()
    where = f"{f.where}.controls"
    if not isinstance(raw, list | tuple):
        raise ProtocolError("bad_field", f"{where}: expected a list, got {type(raw).__name__}", ctx.job_id)
    if len(raw) > MAX_CONTROLS:
        raise ProtocolError("bad_field", f"{where}: at most {MAX_CONTROLS} controls, got {len(raw)}", ctx.job_id)
    return tuple(_parse_one(Fields(c, f"{where}[{i}]", ctx.job_id), images_in, ctx, checkpoint_family)
                 for i, c in enumerate(raw))  # fmt: skip


def _parse_one(f: Fields, images_in: Mapping[str, ImageRef], ctx: ParseContext, checkpoint: str) -> ControlSpec:
    entry = ctx.models.controls.entry(f.str("model", max_len=512))
    ip = isinstance(entry, IPAdapterEntry)
    base = base_family(checkpoint)
    if base in FAMILY_NAMES and entry.family != base:
        what = "IP-Adapter" if ip else "ControlNet"
        raise ProtocolError(
            "bad_field",
            f"{f.where}.model: {entry.name!r} is an {FAMILY_NAMES[entry.family]} {what}; the checkpoint is "
            f"{FAMILY_NAMES[base]}: pick a control made for it",
            ctx.job_id,
        )
    image_name = f.str("image", max_len=256)
    if image_name not in images_in:
        raise ProtocolError(
            "bad_field", f"{f.where}.image: no image named {image_name!r} in the job's images", ctx.job_id
        )
    kind = f.choice("kind", ("reference",) if ip else KINDS, None) if f.data.get("kind") is not None else None
    kind = kind or (None if ip else entry.kind)
    preprocess = parse_preprocess(f.data.get("preprocess", "none") or "none", f"{f.where}.preprocess", ctx.job_id, kind)
    if ip and preprocess.type != "none":
        why = f'{f.where}.preprocess: an IP-Adapter takes the reference picture as it is (use "none")'
        raise ProtocolError("bad_field", why, ctx.job_id)
    start, end = f.float("start", 0.0, lo=0.0, hi=1.0), f.float("end", 1.0, lo=0.0, hi=1.0)
    if start > end:
        raise ProtocolError("bad_field", f"{f.where}.start: {start} is after end {end}", ctx.job_id)
    return ControlSpec(
        model=entry.name,
        type="ipadapter" if ip else "controlnet",
        image_name=image_name,
        image=ctx.decode(image_name, images_in[image_name]),
        strength=f.float("strength", 1.0, lo=0.0, hi=2.0),
        start=start,
        end=end,
        preprocess=preprocess,
        kind=kind if kind is not None else ("reference" if ip else None),
    )


def fits(size: tuple[int, int], canvas: tuple[int, int]) -> bool:
    """Whether a control image of `size` is the canvas or a scaled copy of it: some scale maps one onto
    the other within a pixel, at the larger of the two resolutions."""
    (cw, ch), (w, h) = size, canvas
    return abs(cw * h - ch * w) <= max(w + h, cw + ch)


def fit_sizes(
    controls: tuple[ControlSpec, ...], sizes: list[tuple[int, int]], what: str, job_id: str
) -> tuple[ControlSpec, ...]:
    """Every ControlNet image must be one of the job's canvases `sizes` (w, h), or a scaled copy of one
    (`what` names them in the error); each control records which (`canvas`: an exact size first)."""
    out = []
    for i, c in enumerate(controls):
        h, w = c.image.shape[:2]
        if c.type != "controlnet":
            out.append(c)
            continue
        exact = [k for k, s in enumerate(sizes) if s == (w, h)]
        scaled = [k for k, s in enumerate(sizes) if fits((w, h), s)]
        if not exact and not scaled:
            want = " or ".join(f"{sw}x{sh}" for sw, sh in sizes)
            raise ProtocolError(
                "bad_image",
                f"images.{c.image_name} (params.controls[{i}].image): {w}x{h}, but a control image must have "
                f"the size of {what} ({want}) or be a scaled copy of it (the same aspect ratio)",
                job_id,
            )
        out.append(replace(c, canvas=(exact or scaled)[0]))
    return tuple(out)


class JobControls:
    """A running job's controls: their models loaded once, its IP-Adapters installed in the UNet for the
    job (the queue's end-of-job undo takes them out), their reference embeddings computed once."""

    def __init__(self, ctx: JobContext, model: LoadedModel, specs: tuple[ControlSpec, ...], cfg: bool) -> None:
        self.specs, self.model = specs, model
        fam = base_family(model.family.name)
        nets: dict[int, Any] = {}
        refs: list[Reference] = []
        states: list[Any] = []
        for i, spec in enumerate(specs):
            entry = ctx.models.controls.entry(spec.model)
            if fam in FAMILY_NAMES and entry.family != fam:  # diffusers-folder checkpoints are only known now
                raise ProtocolError(
                    "bad_field", f"params.controls[{i}].model: {spec.model!r} is not made for {FAMILY_NAMES[fam]}"
                )
            if spec.type == "controlnet":
                nets[i] = ctx.models.controls.controlnet(spec.model)
                continue
            ip_entry, state, vision = ctx.models.controls.ipadapter(spec.model)
            states.append(state)
            embeds = reference_embeds(vision, spec.reference(), ip_entry.hidden_states, cfg)
            refs.append(Reference(embeds, spec.strength, spec.start, spec.end))
        self.nets = nets
        self.ip_hook = None
        if states:
            try:
                model.push_undo(install(model.unet, states))
            except Exception as exc:  # an adapter whose layers do not fit this UNet
                raise ModelLoadError(f"cannot use IP-Adapter(s) with {model.name}: {exc}") from exc
            self.ip_hook = IPAdapterHook(model.unet, refs)

    def maps(self, sizes: list[tuple[int, int]], fill: np.ndarray | None = None) -> list[np.ndarray | None]:
        """Each ControlNet's control image at the size of the canvas its layer was given for
        (`sizes[spec.canvas]`, in the order the job's `fit_sizes` listed them); None for IP-Adapters.
        `fill`: the job's selection (at `sizes[0]`) for the inpaint preprocessor."""
        out: list[np.ndarray | None] = []
        for s in self.specs:
            if s.type != "controlnet":
                out.append(None)
                continue
            size = sizes[s.canvas]
            out.append(s.control_image(size, fill if fill is not None and fill.shape[::-1] == size else None))
        return out

    def at(self, size: tuple[int, int], fill: np.ndarray | None = None) -> list[np.ndarray | None]:
        """Every ControlNet's control image at `size` (w, h): jobs whose canvases all map onto one."""
        return self.maps([size] * (1 + max((s.canvas for s in self.specs), default=0)), fill)

    def hooks(self, maps: list[np.ndarray | None] | None) -> list[Hook]:
        """The hooks for one canvas, `maps` being the control images already in that canvas's geometry
        (None: the IP-Adapters only)."""
        hooks: list[Hook] = []
        for i, spec in enumerate(self.specs):
            img = maps[i] if maps is not None else None
            if i in self.nets and img is not None:
                hooks.append(ControlNetHook(self.nets[i], control_tensor(img), spec.strength, spec.start, spec.end))
        if self.ip_hook is not None:
            hooks.append(self.ip_hook)
        return hooks
