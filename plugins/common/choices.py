"""What an editor's drop-downs offer, read from the server's `welcome`: models, samplers, upscalers,
restorers, VAEs, LoRAs, control models (and the control preprocessors, which every server has). The value sent
for "let the server choose" is the empty string, so a saved empty choice means the same on every server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Option:
    id: str  # the value that goes into the request ("" = the server's default)
    label: str  # what the user reads


def names(welcome: dict[str, Any] | None, key: str) -> list[str]:
    """The names the server lists under `key` (`loras`, `vaes`, `upscalers`, …); junk entries dropped."""
    return [str(v) for v in (welcome or {}).get(key) or [] if isinstance(v, str) and v]


def models(welcome: dict[str, Any] | None) -> list[Option]:
    resident = (welcome or {}).get("model")
    out = [Option("", f"Server default ({resident})" if resident else "Server default")]
    for m in (welcome or {}).get("models") or []:
        if not isinstance(m, dict) or not m.get("name"):
            continue
        tags = [t for t, on in (("inpainting", m.get("inpaint")), ("SDXL", m.get("xl"))) if on]
        out.append(Option(str(m["name"]), f"{m['name']} ({', '.join(tags)})" if tags else str(m["name"])))
    return out


def samplers(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option(name, name) for name in names(welcome, "samplers")]


def schedules(welcome: dict[str, Any] | None, sampler: str) -> list[str]:
    """The schedule types `sampler` runs with on this server (all the server lists when it does not say
    per sampler; none for a server without schedule types)."""
    per = (welcome or {}).get("sampler_schedules")
    if isinstance(per, dict) and isinstance(per.get(sampler), list):
        return [str(v) for v in per[sampler] if isinstance(v, str) and v]
    return names(welcome, "schedules")


def upscalers(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "Lanczos (no model)")] + [Option(n, n) for n in names(welcome, "upscalers")]


def restorers(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "Server default")] + [Option(n, n) for n in names(welcome, "restorers")]


def vaes(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "The model's own")] + [Option(n, n) for n in names(welcome, "vaes")]


def loras(welcome: dict[str, Any] | None) -> list[Option]:
    """LoRAs to insert into the prompt as a tag (no default: nothing is inserted without a pick)."""
    return [Option(n, n) for n in names(welcome, "loras")]


# The server's built-in preprocessors for control layers (docs/protocol.md, "Controls").
PREPROCESSORS = ("none", "auto", "canny", "lineart", "scribble", "softedge", "tile", "blur", "inpaint")
_PREPROCESS_LABELS = {"none": "None (the layer is the control image)", "auto": "Automatic (by the control's kind)"}


def controls(welcome: dict[str, Any] | None, family: str | None = None) -> list[Option]:
    """ "No control", then the server's ControlNets and IP-Adapters (only those for `family` when given)."""
    out = [Option("", "No control")]
    for c in (welcome or {}).get("controls") or []:
        if not isinstance(c, dict) or not c.get("name") or (family and c.get("family") != family):
            continue
        what = "IP-Adapter" if c.get("type") == "ipadapter" else str(c.get("kind") or "ControlNet")
        out.append(Option(str(c["name"]), f"{c['name']} ({what}, {c.get('family', '?')})"))
    return out


def preprocessors(_welcome: dict[str, Any] | None = None) -> list[Option]:
    return [Option(p, _PREPROCESS_LABELS.get(p, p)) for p in PREPROCESSORS]


# field name (as the settings and the GIMP procedures call it) -> its options
FIELDS: dict[str, Callable[[dict[str, Any] | None], list[Option]]] = {
    "model": models,
    "sampler": samplers,
    "upscaler": upscalers,
    "restorer": restorers,
    "control-model": controls,
    "control-preprocess": preprocessors,
}


def pick(value: str, options: list[Option]) -> str:
    """The option to select for a saved `value`: itself when the server offers it, else the first
    (the server's default) — a name from another server or a deleted file must not stick."""
    if any(o.id == value for o in options):
        return value
    return options[0].id if options else value
