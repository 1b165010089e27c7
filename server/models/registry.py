"""Checkpoint discovery in a models folder (plain, A1111 or ComfyUI layout), the other model files found
there, and the model manager: cached checkpoints (`residency`) plus a byte-bounded cache of upscalers/restorers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, UnknownModel
from . import detect, loader
from .cache import FileCache, module_bytes
from .checkpoint import read_header
from .embeddings import discover_embeddings
from .files import check_name, walk
from .lora import discover_loras
from .memory import auto_device_budget, auto_ram_budget
from .residency import ModelCache
from .restorer import discover_restorers, load_restorer
from .upscaler import find_upscalers, load_upscaler
from .vae import discover_vaes

log = logging.getLogger(__name__)

# Where checkpoints live in the trees users already have, relative to --models.
CHECKPOINT_DIRS = ("", "Stable-diffusion", "checkpoints", "models/Stable-diffusion", "models/checkpoints", "diffusers")
SINGLE_FILE = (".safetensors",)
PICKLED = (".ckpt",)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    family: str  # sd15 | sd15-inpaint | sd2 | sdxl | sdxl-inpaint | unknown
    native: int
    pickled: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "native": self.native,
            "xl": self.family.startswith("sdxl"),
            "inpaint": self.family.endswith("inpaint"),
            "pickled": self.pickled,
        }


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file()


def _entry_for(path: Path, name: str) -> ModelEntry | None:
    if path.is_dir():
        return ModelEntry(name, path, "diffusers", 512) if _is_diffusers_folder(path) else None
    suffix = path.suffix.lower()
    if suffix in PICKLED:
        return ModelEntry(name, path, "unknown", 512, pickled=True)
    if suffix not in SINGLE_FILE:
        return None
    try:
        shapes, meta = read_header(path)
        fam = detect.family_for(shapes, meta)
    except Exception as exc:  # not an SD checkpoint (a LoRA, a VAE, a corrupt file): skip it, say why
        log.info("skipping %s: %s", path, exc)
        return None
    if fam.refiner:  # only usable as a generate `refiner`: listed under welcome.refiners
        return None
    return ModelEntry(name, path, fam.name, fam.native)


def _checkpoint_files(root: Path) -> list[tuple[str, Path]]:
    """(name, path) for every candidate in the checkpoint folders; the first folder wins on a clash.

    The models folder itself is only searched at its top level (it may be a whole A1111/ComfyUI tree)."""
    seen: dict[str, Path] = {}
    root = root.resolve()
    for sub in CHECKPOINT_DIRS:
        base = root / sub
        for path in walk(base, recursive=bool(sub), bundle=_is_diffusers_folder):
            rel = path.relative_to(base)
            seen.setdefault(rel.with_suffix("").as_posix() if path.is_file() else rel.as_posix(), path)
    return list(seen.items())


def discover(root: Path) -> dict[str, ModelEntry]:
    """Name → entry. Names are paths relative to the checkpoint folder, without suffix."""
    found: dict[str, ModelEntry] = {}
    for name, path in _checkpoint_files(root):
        entry = _entry_for(path, name)
        if entry is not None:
            found[name] = entry
    return found


def discover_refiners(root: Path) -> dict[str, Path]:
    """SDXL refiner checkpoints in the checkpoint folders (A1111 keeps them beside the base models)."""
    found: dict[str, Path] = {}
    for name, path in _checkpoint_files(root):
        if path.is_file() and path.suffix.lower() in SINGLE_FILE:
            try:
                shapes, meta = read_header(path)
                if detect.family_for(shapes, meta).refiner:
                    found[name] = path
            except Exception:  # noqa: S112 - not a checkpoint; discover() logs these
                continue
    return found


# Other model files found in the same tree, by `welcome` key: name -> path. Kinds register here.
ASSET_KINDS: dict[str, Callable[[Path], dict[str, Path]]] = {
    "restorers": discover_restorers,
    "loras": discover_loras,
    "embeddings": discover_embeddings,
    "vaes": discover_vaes,
    "refiners": discover_refiners,
    "upscalers": find_upscalers,  # ESRGAN/, RealESRGAN/, upscale_models/
}
# Loaded upscalers and face restorers kept for the next job (a 4x ESRGAN is ~64 MB, GFPGAN ~350 MB).
AUX_CACHE_BYTES = 1 << 30
REFINER = "refiner:"  # cache key prefix: a refiner may share a checkpoint's name


class ModelManager:
    """Checkpoints by name, loaded on demand and kept in a two-tier cache (`residency.ModelCache`): the
    device tier within `vram_budget` bytes, models pushed out of it in RAM within `ram_budget` bytes
    (None: automatic, see `memory`).

    Upscalers and face restorers are small next to a checkpoint: they are kept loaded beside it in
    `aux`, least recently used dropped past `aux_cache_bytes`."""

    def __init__(
        self,
        root: Path | None,
        device: torch.device,
        dtype: torch.dtype,
        allow_pickle: bool = False,
        aux_cache_bytes: int = AUX_CACHE_BYTES,
        vram_budget: int | None = None,
        ram_budget: int | None = None,
        on_load: Callable[[loader.LoadedModel], None] | None = None,
        on_release: Callable[[loader.LoadedModel], None] | None = None,
    ):
        self.root = root
        # Run on every checkpoint loaded, and before one leaves the device (the server's fast-path
        # set-up and the release of its CUDA graphs' memory); models/ knows nothing of it.
        self.on_load = on_load
        self.device = device
        self.dtype = dtype
        self.allow_pickle = allow_pickle
        self.entries: dict[str, ModelEntry] = discover(root) if root else {}
        self.assets: dict[str, dict[str, Path]] = {k: (find(root) if root else {}) for k, find in ASSET_KINDS.items()}
        vram = auto_device_budget(device) if vram_budget is None else vram_budget
        ram = auto_ram_budget(device) if ram_budget is None else ram_budget
        self.cache = ModelCache(device, vram, ram, on_release=on_release)
        # Upscalers and restorers stay loaded beside the checkpoint (by file), within a byte budget.
        self.aux: FileCache[Any] = FileCache(aux_cache_bytes, lambda desc: module_bytes(desc.model))

    @property
    def resident_name(self) -> str | None:
        """The most recently used checkpoint still loaded (refiners are not selectable models)."""
        return next((key for key, _ in self.cache.resident() if key in self.entries), None)

    def is_resident(self, name: str) -> bool:
        """Whether a job on checkpoint `name` would start without loading or copying it (cheap, any thread)."""
        return self.cache.on_device(name)

    def resident(self) -> list[dict[str, Any]]:
        """`welcome.resident`: every loaded model, most recently used first, and where it is."""
        out: list[dict[str, Any]] = []
        for key, tier in self.cache.resident():
            where = "vram" if tier == "device" and self.device.type == "cuda" else "ram"
            refiner = key.startswith(REFINER)
            out.append({"name": key.removeprefix(REFINER), "where": where} | ({"refiner": True} if refiner else {}))
        return out

    def entry(self, name: str | None) -> ModelEntry:
        if name is None:
            if self.resident_name is not None:
                return self.entries[self.resident_name]
            if not self.entries:
                raise UnknownModel("the server has no models: start it with --models DIR")
            return next(iter(self.entries.values()))
        check_name(name)
        if name not in self.entries:
            known = ", ".join(list(self.entries)[:10]) or "none"
            raise UnknownModel(f"unknown model {name!r}; available: {known}")
        entry = self.entries[name]
        if entry.pickled and not self.allow_pickle:
            raise ModelLoadError(f"{name} is a pickled .ckpt: refused unless the server runs with --allow-pickle")
        return entry

    def get(self, name: str | None) -> loader.LoadedModel:
        entry = self.entry(name)
        return self._cached(entry.name, entry.path, self.allow_pickle, "model")

    def get_refiner(self, name: str) -> loader.LoadedModel:
        """An SDXL refiner, cached beside the base: a base+refiner job that fits loads each once."""
        return self._cached(REFINER + name, self.asset("refiners", name), False, "refiner")

    def _cached(self, key: str, path: Path, allow_pickle: bool, what: str) -> loader.LoadedModel:
        def load() -> loader.LoadedModel:
            try:
                if path.is_dir():
                    model = loader.load_diffusers_folder(path, key, self.device, self.dtype)
                else:
                    model = loader.load_single_file(path, key, self.device, self.dtype, allow_pickle)
            except Exception as exc:
                log.exception("loading %s failed", path)
                raise ModelLoadError(f"cannot load {what} {key.removeprefix(REFINER)!r}: {exc}") from exc
            model.extras["manager"] = self  # prompt features (LoRA, embeddings) resolve names through it
            if self.on_load is not None:
                self.on_load(model)
            return model

        def estimate() -> int:
            try:
                return loader.estimate_bytes(path, self.dtype)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load {what} {key.removeprefix(REFINER)!r}: {exc}") from exc

        try:
            stamp = loader.file_stamp(path)
        except OSError as exc:
            raise ModelLoadError(f"cannot load {what} {key.removeprefix(REFINER)!r}: {exc}") from exc
        return self.cache.get(key, stamp, load, estimate)

    def end_job(self) -> None:
        """Revert per-job changes (LoRA patches, VAE override) on every model the job used."""
        self.cache.end_job()

    def asset(self, kind: str, name: str) -> Path:
        """A named file of another kind (restorer, upscaler, LoRA…) from the discovered lists only."""
        check_name(name, kind.rstrip("s"))
        found = self.assets.get(kind, {})
        if name not in found:
            known = ", ".join(list(found)[:10]) or "none"
            raise UnknownModel(f"unknown {kind.rstrip('s')} {name!r}; available: {known}")
        return found[name]

    def upscaler(self, name: str) -> Any:
        """The named upscaler from `welcome.upscalers` as a spandrel descriptor, loaded once."""
        path = self.asset("upscalers", name)
        try:
            return self.aux.get(path, lambda p: load_upscaler(p, self.device))
        except Exception as exc:
            raise ModelLoadError(f"cannot load upscaler {name!r}: {exc}") from exc

    def restorer(self, path: Path) -> Any:
        """The face restorer in `path` (see `restorer.resolve_restorer`) as a spandrel descriptor, loaded once."""
        try:
            return self.aux.get(path, lambda p: load_restorer(p, self.device))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load face restorer {path.name}: {exc}") from exc
