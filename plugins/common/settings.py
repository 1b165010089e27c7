"""Plugin settings: one typed, documented set of keys shared by the Krita and GIMP adapters.

Editors store settings as strings (Krita's `readSetting/writeSetting`, group `sdbridge`; GIMP's one
JSON file in its profile folder); this module owns the keys, defaults and parsing so both adapters
and users' scripts agree on them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

GROUP = "sdbridge"
DEFAULT_URL = "ws://127.0.0.1:8765/"


@dataclass(frozen=True, slots=True)
class Settings:
    url: str = DEFAULT_URL
    token: str = ""
    model: str = ""  # "" = the server's resident/first model
    prompt: str = ""
    negative: str = ""
    seed: int = -1  # used when fixed_seed is on; the last used seed is written back here
    fixed_seed: bool = False
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "Euler a"
    schedule: str = "Automatic"  # A1111's schedule type; one the sampler takes (welcome.sampler_schedules)
    vae: str = ""  # "" = the checkpoint's own VAE
    strength: float = 1.0  # 1.0 = txt2img / full inpaint; < 1 = img2img / refine the selection
    width: int = 0  # 0 = canvas size (capped by the server's max_pixels)
    height: int = 0
    batch: int = 1
    outpaint_side: str = "right"  # left/right/top/bottom, used when no selection touches an edge
    outpaint_pixels: int = 64
    upscale_scale: float = 2.0
    upscale_strength: float = 0.3
    upscaler: str = ""
    restorer: str = ""
    face_strength: float = 0.5
    # Used by the GIMP dialogs (Krita's docker has no field for them yet).
    timeout: int = 600  # seconds a GIMP procedure waits for its result
    outpaint_strength: float = 0.9
    outpaint_left: int = 0  # GIMP's outpaint extends several sides at once
    outpaint_top: int = 0
    outpaint_right: int = 128
    outpaint_bottom: int = 0
    restore_fidelity: float = 0.5
    restore_blend: float = 1.0
    # The control layer's model and how it is used (GIMP's dialog; Krita keeps its controls per document).
    control_model: str = ""  # "" = no control
    control_strength: float = 1.0
    control_preprocess: str = "none"
    # Live painting (plugins/common/live.py): a preset name from live.PRESETS, strength, fixed seed.
    live_preset: str = "LCM 6 steps"
    live_strength: float = 0.5
    live_seed: int = 1234
    # This installation's id on the server: its jobs belong to it (fetch/cancel, fair share), across
    # reconnects, server restarts and editor restarts. "" until `with_client_id` makes one.
    client_id: str = ""

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def load(cls, read: Callable[[str, str], str]) -> Settings:
        """Build from a string store: `read(key, default_as_string) -> str`. Bad values fall back."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            default = f.default
            raw = read(f.name, to_string(default))
            values[f.name] = parse(raw, default)
        return cls(**values)

    def save(self, write: Callable[[str, str], None]) -> None:
        for f in fields(self):
            write(f.name, to_string(getattr(self, f.name)))

    def replace(self, **changes: Any) -> Settings:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)

    def as_dict(self) -> Mapping[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def with_client_id(settings: Settings) -> Settings:
    """`settings` with a `client_id` (a new random one if it has none yet): save the result, so the
    editor keeps one id for good."""
    if settings.client_id:
        return settings
    return settings.replace(client_id=uuid.uuid4().hex)


def to_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse(raw: Any, default: Any) -> Any:
    """Parse a stored string into the default's type; unparsable input keeps the default."""
    if raw is None:
        return default
    text = str(raw).strip()
    try:
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(float(text))
        if isinstance(default, float):
            return float(text)
    except ValueError:
        return default
    return str(raw)
