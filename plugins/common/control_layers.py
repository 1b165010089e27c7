"""A document's control layers, independent of the editor: which layer guides the picture through which
control model (a ControlNet or an IP-Adapter), how strongly and over which part of the run.

The list is kept with the document as JSON (Krita: a document annotation; `to_json` / `from_json`,
which reads what an older or hand-edited document holds without failing) and becomes the `controls`
of every request (`controls`). "Control image from canvas" is a `preprocess` job (`from_canvas`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .actions import ActionError, Canvas, control_layer
from .geometry import Rect
from .jobs import Control, PreprocessRequest

FORMAT = 1  # version of the JSON kept with documents
PREPROCESSORS = ("none", "auto", "canny", "lineart", "scribble", "softedge", "tile", "blur", "inpaint")
MAX_LAYERS = 8  # the server's limit on controls per job


@dataclass(frozen=True)
class ControlLayer:
    """One entry of the list: the editor's id of the layer and how it is used."""

    layer: str  # the editor's stable id of the layer (Krita: the node's uniqueId)
    model: str  # a name from welcome.controls
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: str = "auto"  # how the server turns the layer into the control image
    enabled: bool = True
    name: str = ""  # the layer's name when last seen (named in messages when the layer is gone)

    def label(self) -> str:
        return self.name or self.layer

    def checked(self) -> ControlLayer:
        """This entry with its numbers in range (0 … 2, 0 … 1, start ≤ end) and a known preprocessor."""
        start, end = _clamp(self.start, 0.0, 1.0), _clamp(self.end, 0.0, 1.0)
        pre = self.preprocess if self.preprocess in PREPROCESSORS else "auto"
        return replace(self, strength=_clamp(self.strength, 0.0, 2.0), start=min(start, end), end=end, preprocess=pre)


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(float(value), lo), hi)


def to_json(layers: list[ControlLayer]) -> str:
    return json.dumps({"format": FORMAT, "controls": [asdict(c) for c in layers]}, sort_keys=True)


def from_json(text: str | bytes | None) -> list[ControlLayer]:
    """The list a document holds; entries that are not readable are left out, numbers brought in range."""
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    items = data.get("controls") if isinstance(data, dict) else None
    known = {f.name for f in fields(ControlLayer)}
    out: list[ControlLayer] = []
    for item in items if isinstance(items, list) else []:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("layer"), str)
            or not isinstance(item.get("model"), str)
        ):
            continue
        try:
            out.append(ControlLayer(**{k: v for k, v in item.items() if k in known}).checked())
        except (TypeError, ValueError):
            continue
    return out[:MAX_LAYERS]


def kind_of(model: str, welcome: dict[str, Any] | None) -> str | None:
    """The kind the server gives a control model (canny, scribble, reference, …), None when unknown."""
    for c in (welcome or {}).get("controls") or []:
        if c.get("name") == model:
            return c.get("kind")
    return None


def problems(layers: list[ControlLayer], welcome: dict[str, Any] | None, family: str | None) -> list[str]:
    """What would make the server refuse the enabled entries, in words: a model it does not have, or one
    made for another family than the checkpoint's (`family`: sd15, sdxl, …; None = not known)."""
    offered = {c.get("name"): c for c in (welcome or {}).get("controls") or []}
    base = family.removesuffix("-inpaint") if family else None
    out = []
    for c in layers:
        if not c.enabled:
            continue
        found = offered.get(c.model)
        if found is None:
            out.append(f"Control layer '{c.label()}': the server has no control model '{c.model}'.")
        elif base and found.get("family") and found["family"] != base:
            out.append(f"Control layer '{c.label()}': '{c.model}' is made for {found['family']}, the model is {base}.")
    return out


def controls(
    layers: list[ControlLayer], read: Callable[[str], Canvas | None], rect: Rect | None = None
) -> tuple[Control, ...]:
    """The request's `controls` from the enabled entries: `read(layer id)` gives that layer's pixels at
    the canvas's size (None: the layer is gone, which is an error naming it); `rect`: only that part
    of the canvas (a job on the selection's bounds)."""
    out = []
    for c in layers:
        if not c.enabled:
            continue
        canvas = read(c.layer)
        if canvas is None:
            raise ActionError(f"Control layer '{c.label()}' is no longer in the document: remove it or pick another.")
        out.append(control_layer(c.model, canvas, c.strength, c.preprocess, c.start, c.end, rect))
    if len(out) > MAX_LAYERS:
        raise ActionError(f"At most {MAX_LAYERS} control layers can guide one job; {len(out)} are enabled.")
    return tuple(out)


def from_canvas(canvas: Canvas, preprocess: str, kind: str | None = None) -> PreprocessRequest:
    """'Control image from canvas': the server's `preprocess` job on the visible canvas (`preprocess`
    "auto" follows `kind`, e.g. the chosen control model's); the map comes back as a new layer."""
    if preprocess not in PREPROCESSORS:
        raise ActionError(f"Unknown preprocessor '{preprocess}': one of {', '.join(PREPROCESSORS)}.")
    if preprocess == "none":
        raise ActionError("Choose a preprocessor to make a control image (the canvas itself needs none).")
    return PreprocessRequest(preprocess=preprocess, image=canvas.image(opaque=True), control_kind=kind)
