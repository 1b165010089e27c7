"""What an editor's drop-downs offer, read from the server's `welcome`: models, samplers, upscalers,
restorers, VAEs, LoRAs. The value sent for "let the server choose" is the empty string, so a saved empty choice
means the same on every server."""

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


def upscalers(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "Lanczos (no model)")] + [Option(n, n) for n in names(welcome, "upscalers")]


def restorers(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "Server default")] + [Option(n, n) for n in names(welcome, "restorers")]


def vaes(welcome: dict[str, Any] | None) -> list[Option]:
    return [Option("", "The model's own")] + [Option(n, n) for n in names(welcome, "vaes")]


def loras(welcome: dict[str, Any] | None) -> list[Option]:
    """LoRAs to insert into the prompt as a tag (no default: nothing is inserted without a pick)."""
    return [Option(n, n) for n in names(welcome, "loras")]


# field name (as the settings and the GIMP procedures call it) -> its options
FIELDS: dict[str, Callable[[dict[str, Any] | None], list[Option]]] = {
    "model": models,
    "sampler": samplers,
    "upscaler": upscalers,
    "restorer": restorers,
}


def pick(value: str, options: list[Option]) -> str:
    """The option to select for a saved `value`: itself when the server offers it, else the first
    (the server's default) — a name from another server or a deleted file must not stick."""
    if any(o.id == value for o in options):
        return value
    return options[0].id if options else value
