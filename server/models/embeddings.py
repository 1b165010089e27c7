"""Textual-inversion embeddings: discovery and loading (A1111 `.pt`, `.safetensors`, SDXL two-encoder files).

The vectors are substituted for placeholder tokens at encode time (see `prompt.py`); the model's
embedding table is never changed.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .cache import FileCache, nbytes
from .files import find_files

EMBEDDING_DIRS = ("embeddings", "models/embeddings", "textual_inversion")
SUFFIXES = (".pt", ".safetensors", ".bin")


class BadEmbedding(ValueError):
    pass


def discover_embeddings(root: Path) -> dict[str, Path]:
    """Name → file. A1111 names embeddings by file stem (sub-folders only organise), so do we."""
    return find_files(root, EMBEDDING_DIRS, SUFFIXES, by_stem=True)


Vectors = dict[str, torch.Tensor]  # "clip_l" / "clip_g" / "any" → [n, dim]

# Loaded embedding files for the next encode (they are a few KB each).
_LOADED: FileCache[Vectors] = FileCache(64 << 20, lambda vectors: nbytes(vectors.values()))


def _as_matrix(t: object, what: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise BadEmbedding(f"{what} is not a tensor")
    t = t.detach().float()
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[0] == 0:
        raise BadEmbedding(f"{what} has shape {tuple(t.shape)}, expected [vectors, width]")
    return t


def parse(data: dict) -> Vectors:
    if "clip_l" in data or "clip_g" in data:  # SDXL: one set per text encoder
        return {k: _as_matrix(data[k], k) for k in ("clip_l", "clip_g") if k in data}
    if "string_to_param" in data:  # A1111 .pt
        params = data["string_to_param"]
        if not isinstance(params, dict) or not params:
            raise BadEmbedding("string_to_param is empty")
        return {"any": _as_matrix(next(iter(params.values())), "string_to_param")}
    if "emb_params" in data:  # A1111 .safetensors
        return {"any": _as_matrix(data["emb_params"], "emb_params")}
    tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
    if len(tensors) == 1:  # diffusers / HF concept files: {"<token>": tensor}
        return {"any": _as_matrix(tensors[0], "embedding")}
    raise BadEmbedding("unknown embedding layout (expected string_to_param, emb_params or clip_l/clip_g)")


def load(path: Path) -> Vectors:
    return _LOADED.get(path, _read)


def _read(path: Path) -> Vectors:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data: dict = load_file(str(path))
    else:
        # weights_only: an embedding file must not be able to run code when loaded.
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    return parse(data)


def for_encoder(vectors: Vectors, role: str, width: int, name: str) -> torch.Tensor:
    """The vectors for one text encoder (`role` clip_l / clip_g), checked against its width."""
    t = vectors.get(role, vectors.get("any"))
    if t is None:
        raise BadEmbedding(f"embedding {name!r} has no vectors for the {role} text encoder")
    if t.shape[1] != width:
        raise BadEmbedding(
            f"embedding {name!r} has width {t.shape[1]} but this model's text encoder expects {width} "
            "(made for another model family?)"
        )
    return t
