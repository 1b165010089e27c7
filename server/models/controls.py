"""The control models of a models tree: ControlNets and IP-Adapters by name, their CLIP vision
encoders, and the loaded ones kept for the next job (by file, least recently used dropped past a
byte budget, like upscalers)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import MissingModel, ModelLoadError, UnknownModel
from .cache import FileCache, module_bytes, nbytes
from .clip_vision import ClipVision, ClipVisionEntry, discover_clip_vision, load_clip_vision
from .controlnet import CONTROLNET_DIRS, ControlNetEntry, discover_controlnets, load_controlnet
from .files import check_name
from .ipadapter import (
    IPADAPTER_DIRS,
    IPAdapterEntry,
    describe_state,
    discover_ipadapters,
    fitting_encoder,
    load_state,
    shapes_of,
)

log = logging.getLogger(__name__)

ControlEntry = ControlNetEntry | IPAdapterEntry
# A SD1.5 ControlNet is ~0.7 GB in fp16, an SDXL one ~2.5 GB: room for a few next to the checkpoint.
CONTROL_CACHE_BYTES = 6 << 30


def _weigh(value: Any) -> int:
    if isinstance(value, torch.nn.Module):
        return module_bytes(value)
    if isinstance(value, ClipVision):
        return module_bytes(value.model)
    return nbytes(t for part in value.values() for t in part.values())  # an IP-Adapter state


def base_family(family: str) -> str:
    """The family a control must be made for: inpainting checkpoints take their base's controls."""
    return family.removesuffix("-inpaint")


@dataclass(eq=False)
class ControlModels:
    """Discovered ControlNets, IP-Adapters and CLIP vision encoders of one models tree."""

    root: Path | None
    device: torch.device
    dtype: torch.dtype
    allow_pickle: bool = False
    cache_bytes: int = CONTROL_CACHE_BYTES
    encoders: dict[str, ClipVisionEntry] = field(init=False, default_factory=dict)
    entries: dict[str, ControlEntry] = field(init=False, default_factory=dict)
    loaded: FileCache[Any] = field(init=False)

    def __post_init__(self) -> None:
        if self.root is not None:
            self.encoders = discover_clip_vision(self.root)
            self.entries.update(discover_controlnets(self.root))
            for name, entry in discover_ipadapters(self.root, self.encoders).items():
                if name in self.entries:
                    log.warning("IP-Adapter %s has the name of a ControlNet: the ControlNet keeps it", name)
                    continue
                self.entries[name] = entry
        self.loaded = FileCache(self.cache_bytes, _weigh)

    def welcome(self) -> dict[str, Any]:
        """`welcome.controls` (name, type, family, kind of each) and `welcome.clip_vision` (names)."""
        return {"controls": [e.describe() for e in self.entries.values()], "clip_vision": sorted(self.encoders)}

    def entry(self, name: str) -> ControlEntry:
        check_name(name, "control model")
        if name not in self.entries:
            known = ", ".join(list(self.entries)[:10]) or "none"
            raise UnknownModel(
                f"unknown control model {name!r}: ControlNets are found in {_dirs(CONTROLNET_DIRS)}, "
                f"IP-Adapters in {_dirs(IPADAPTER_DIRS)} of the models folder; available: {known}"
            )
        entry = self.entries[name]
        if entry.pickled and not self.allow_pickle:
            raise ModelLoadError(f"{name} is a pickled file: refused unless the server runs with --allow-pickle")
        if isinstance(entry, IPAdapterEntry) and entry.encoder is None and not entry.pickled:
            raise self._no_encoder(entry)  # (a pickle's encoder is only known once it is read)
        return entry

    def _no_encoder(self, entry: IPAdapterEntry) -> MissingModel:
        what = "projected image embedding" if entry.variant == "plain" else "hidden states"
        return MissingModel(
            f"IP-Adapter {entry.name!r} needs a CLIP vision encoder with a {entry.image_dim}-wide {what} "
            f"(1024: ViT-H/14 projection, 1280: ViT-H/14 hidden or ViT-bigG/14 projection) in "
            f"{_dirs(('clip_vision',))} of the models folder; found: {', '.join(self.encoders) or 'none'}"
        )

    def controlnet(self, name: str) -> Any:
        """The named ControlNet as a `diffusers.ControlNetModel` on the server's device, loaded once."""
        entry = self.entry(name)
        assert isinstance(entry, ControlNetEntry)
        try:
            return self.loaded.get(
                entry.path, lambda _p: load_controlnet(entry, self.device, self.dtype, self.allow_pickle)
            )
        except Exception as exc:
            log.exception("loading ControlNet %s failed", entry.path)
            raise ModelLoadError(f"cannot load ControlNet {name!r}: {exc}") from exc

    def ipadapter(self, name: str) -> tuple[IPAdapterEntry, dict[str, Any], ClipVision]:
        """The named IP-Adapter's state (for `ipadapter.install`) and its CLIP vision encoder, loaded once."""
        entry = self.entry(name)
        assert isinstance(entry, IPAdapterEntry)
        try:
            state = self.loaded.get(entry.path, lambda _p: load_state(entry, self.allow_pickle))
            if entry.pickled:  # what a pickle holds is only known now: describe it and pick its encoder again
                family, variant, dim = describe_state(shapes_of(state))
                enc_name = fitting_encoder(variant, dim, self.encoders)
                entry = replace(entry, family=family, variant=variant, image_dim=dim, encoder=enc_name)
                self.entries[name] = entry
            if entry.encoder is None:
                raise self._no_encoder(entry)
            enc = self.encoders[entry.encoder]
            vision = self.loaded.get(enc.path, lambda _p: load_clip_vision(enc, self.device, self.dtype))
        except MissingModel:
            raise
        except Exception as exc:
            log.exception("loading IP-Adapter %s failed", entry.path)
            raise ModelLoadError(f"cannot load IP-Adapter {name!r}: {exc}") from exc
        return entry, state, vision


def _dirs(names: tuple[str, ...]) -> str:
    return ", ".join(f"{n}/" for n in names)
