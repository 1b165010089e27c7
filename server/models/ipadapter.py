"""IP-Adapter files (`ipadapter/`, `IP-Adapter/`): a reference image as extra cross-attention tokens.

Files are the h94/IP-Adapter release layout: `.safetensors` with flat `image_proj.*` / `ip_adapter.*`
keys, or the `.bin` pickles with the same two parts nested (only with `--allow-pickle`). Understood:
plain adapters (`ip-adapter_sd15`, `ip-adapter_sdxl_vit-h`: 4 tokens from the projected image
embedding), plus adapters (`ip-adapter-plus*`: a resampler over the encoder's penultimate hidden
states) and full-face ones. Face-ID adapters need a face recogniser and are not offered.

Each adapter reads a CLIP vision encoder of a given width (`clip_vision.py`); the first discovered
encoder that fits is used. The UNet gets the adapter through diffusers' IP-Adapter attention
processors (built from the state dict, no hub) for one job; `install` returns how to take them out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import read_header
from .clip_vision import ClipVisionEntry
from .files import discover_entries

log = logging.getLogger(__name__)

IPADAPTER_DIRS = ("ipadapter", "IP-Adapter", "models/ipadapter", "models/IP-Adapter")
SINGLE_FILE = (".safetensors",)
PICKLED = (".bin",)
FAMILY_BY_CONTEXT = {768: "sd15", 1024: "sd2", 2048: "sdxl"}


class NotAnIPAdapter(ValueError):
    pass


@dataclass(frozen=True)
class IPAdapterEntry:
    name: str
    path: Path
    family: str  # sd15 | sd2 | sdxl
    variant: str  # plain | plus | full
    image_dim: int  # encoder width it reads: the projection (plain) or the hidden states (plus, full)
    encoder: str | None  # the clip_vision entry that fits, None when none does
    pickled: bool = False

    @property
    def hidden_states(self) -> bool:
        """Whether it reads the encoder's penultimate hidden states rather than the projected embedding."""
        return self.variant != "plain"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": "ipadapter", "family": self.family, "kind": "reference"}


def describe_state(shapes: dict[str, tuple[int, ...]], declared: str | None = None) -> tuple[str, str, int]:
    """(family, variant, image_dim) from flat `image_proj.*` / `ip_adapter.*` key shapes (`declared`: the
    family a tiny test file records in its header)."""
    if any(k.startswith("image_proj.perceiver_resampler.") for k in shapes) or (
        "image_proj.norm.weight" in shapes and "image_proj.proj.0.weight" in shapes
    ):
        raise NotAnIPAdapter("Face-ID IP-Adapters need a face recogniser (insightface): not supported")
    if "image_proj.proj.weight" in shapes:
        variant, dim = "plain", shapes["image_proj.proj.weight"][1]
    elif "image_proj.proj.3.weight" in shapes:
        variant, dim = "full", shapes["image_proj.proj.0.weight"][1]
    elif "image_proj.latents" in shapes:
        variant, dim = "plus", shapes["image_proj.proj_in.weight"][1]
    else:
        raise NotAnIPAdapter("no image projection (image_proj.*): not an IP-Adapter")
    k = shapes.get("ip_adapter.1.to_k_ip.weight")
    if k is None:
        raise NotAnIPAdapter("no ip_adapter.1.to_k_ip layer")
    family = declared or FAMILY_BY_CONTEXT.get(k[1])
    if family is None:
        raise NotAnIPAdapter(f"unknown cross-attention width {k[1]}")
    return family, variant, dim


def fitting_encoder(variant: str, dim: int, encoders: dict[str, ClipVisionEntry]) -> str | None:
    for name, enc in encoders.items():
        if (enc.projection if variant == "plain" else enc.hidden) == dim:
            return name
    return None


def entry_for(path: Path, name: str, encoders: dict[str, ClipVisionEntry]) -> IPAdapterEntry:
    if path.suffix.lower() in PICKLED:
        # A pickle's shapes cannot be read without unpickling: assume SD1.5 plain until it is loaded.
        return IPAdapterEntry(name, path, "sd15", "plain", 1024, fitting_encoder("plain", 1024, encoders), True)
    shapes, meta = read_header(path)
    family, variant, dim = describe_state(shapes, meta.get("sdbridge.family"))
    return IPAdapterEntry(name, path, family, variant, dim, fitting_encoder(variant, dim, encoders))


def discover_ipadapters(root: Path, encoders: dict[str, ClipVisionEntry]) -> dict[str, IPAdapterEntry]:
    return discover_entries(root, IPADAPTER_DIRS, SINGLE_FILE + PICKLED, lambda p, n: entry_for(p, n, encoders))


def load_state(entry: IPAdapterEntry, allow_pickle: bool) -> dict[str, dict[str, torch.Tensor]]:
    """The adapter as diffusers' loader wants it: `{"image_proj": {...}, "ip_adapter": {...}}`."""
    if entry.pickled:
        from .pickled import read_pickled

        raw = read_pickled(entry.path, allow_pickle)
        flat = {f"{part}.{k}": v for part in ("image_proj", "ip_adapter") for k, v in raw.get(part, {}).items()}
    else:
        from safetensors.torch import load_file

        flat = load_file(str(entry.path))
    state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, _, rest = key.partition(".")
        if part in state:
            state[part][rest] = value
    return state


def shapes_of(state: dict[str, dict[str, torch.Tensor]]) -> dict[str, tuple[int, ...]]:
    """Flat key → shape of a loaded state (what `describe_state` reads)."""
    return {f"{part}.{k}": tuple(v.shape) for part, tensors in state.items() for k, v in tensors.items()}


def install(unet: Any, states: list[dict[str, dict[str, torch.Tensor]]]) -> Callable[[], None]:
    """Put IP-Adapter attention processors (one slot per adapter, in order) into `unet`; returns the undo."""
    saved = (unet.attn_processors, unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
    unet._load_ip_adapter_weights(states, low_cpu_mem_usage=False)

    def undo() -> None:
        unet.set_attn_processor(saved[0])
        unet.encoder_hid_proj = saved[1]
        unet.config.encoder_hid_dim_type = saved[2]

    return undo


def set_scales(unet: Any, scales: list[float]) -> None:
    """Per-adapter scales of the installed processors (0 = that adapter is skipped for this call)."""
    for proc in unet.attn_processors.values():
        proc = getattr(proc, "inner", proc)  # regional prompts wrap the processors (pipelines.regionattn)
        if hasattr(proc, "to_k_ip"):
            proc.scale = list(scales)
