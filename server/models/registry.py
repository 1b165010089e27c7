"""Checkpoint discovery in a models folder (plain, A1111 or ComfyUI layout), the other model files found
there, and the model manager: one resident checkpoint plus a byte-bounded cache of upscalers/restorers."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelLoadError, UnknownModel
from . import detect, loader
from .cache import FileCache, module_bytes
from .embeddings import discover_embeddings
from .files import check_name, walk
from .lora import discover_loras
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
        shapes, meta = loader._read_header(path)
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
                shapes, meta = loader._read_header(path)
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


class ModelManager:
    """Keeps one model resident; asking for another unloads the old one first (VRAM is finite).

    Upscalers and face restorers are small next to a checkpoint: they are kept loaded beside it in
    `aux`, least recently used dropped past `aux_cache_bytes`."""

    def __init__(
        self,
        root: Path | None,
        device: torch.device,
        dtype: torch.dtype,
        allow_pickle: bool = False,
        aux_cache_bytes: int = AUX_CACHE_BYTES,
        on_load: Callable[[loader.LoadedModel], None] | None = None,
    ):
        self.root = root
        # Run on every checkpoint loaded (the server's fast-path set-up); models/ knows nothing of it.
        self.on_load = on_load
        self.device = device
        self.dtype = dtype
        self.allow_pickle = allow_pickle
        self.entries: dict[str, ModelEntry] = discover(root) if root else {}
        self.assets: dict[str, dict[str, Path]] = {k: (find(root) if root else {}) for k, find in ASSET_KINDS.items()}
        self._resident: loader.LoadedModel | None = None
        self._lock = threading.Lock()
        # Upscalers and restorers stay loaded beside the checkpoint (by file), within a byte budget.
        self.aux: FileCache[Any] = FileCache(aux_cache_bytes, lambda desc: module_bytes(desc.model))

    @property
    def resident_name(self) -> str | None:
        # A resident refiner is not a selectable model: report none rather than a name clients can't use.
        return self._resident.name if self._resident and self._resident.name in self.entries else None

    def entry(self, name: str | None) -> ModelEntry:
        if name is None:
            if self._resident is not None and self._resident.name in self.entries:
                return self.entries[self._resident.name]
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
        with self._lock:
            if self._resident is not None and self._resident.name == entry.name:
                return self._resident
            self.unload()
            try:
                if entry.path.is_dir():
                    model = loader.load_diffusers_folder(entry.path, entry.name, self.device, self.dtype)
                else:
                    model = loader.load_single_file(entry.path, entry.name, self.device, self.dtype, self.allow_pickle)
            except Exception as exc:
                log.exception("loading %s failed", entry.path)
                raise ModelLoadError(f"cannot load model {entry.name!r}: {exc}") from exc
            return self._made_resident(model)

    def get_refiner(self, name: str) -> loader.LoadedModel:
        """Load an SDXL refiner into the single resident slot (the base is unloaded: one model in memory).

        A base+refiner job therefore loads two checkpoints, and the next base job reloads its base."""
        path = self.asset("refiners", name)
        key = f"refiner:{name}"
        with self._lock:
            if self._resident is not None and self._resident.name == key:
                return self._resident
            self.unload()
            try:
                model = loader.load_single_file(path, key, self.device, self.dtype, False)
            except Exception as exc:
                log.exception("loading refiner %s failed", path)
                raise ModelLoadError(f"cannot load refiner {name!r}: {exc}") from exc
            return self._made_resident(model)

    def _made_resident(self, model: loader.LoadedModel) -> loader.LoadedModel:
        model.extras["manager"] = self  # prompt features (LoRA, embeddings) resolve names through it
        if self.on_load is not None:
            self.on_load(model)
        self._resident = model
        return model

    def end_job(self) -> None:
        """Revert per-job changes (LoRA patches, VAE override) so the next job sees the checkpoint as loaded."""
        if self._resident is not None:
            self._resident.undo_job_changes()

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

    def unload(self) -> None:
        self._resident = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
