"""Reading legacy pickled weight files (`.ckpt`, `.pth`, `.bin`), only when the server allows it.

Unpickling runs code from the file, so every pickled format is refused unless the server was started
with `--allow-pickle`; the message says how to avoid it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class PickleRefused(PermissionError):
    pass


def read_pickled(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """The state dict in a pickled file (a top-level `state_dict` entry is unwrapped)."""
    if not allow_pickle:
        raise PickleRefused(
            f"{path.name} is a pickled file; loading it can run arbitrary code. "
            "Convert it to .safetensors or start the server with --allow-pickle."
        )
    raw = torch.load(str(path), map_location="cpu", weights_only=False)
    return raw.get("state_dict", raw) if isinstance(raw, dict) else raw


def tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Only the tensors of a state dict, contiguous (what safetensors can store)."""
    return {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
