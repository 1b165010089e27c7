"""Reading `.safetensors` checkpoints: the header, and the tensors straight into their target dtype and device.

Tensors come from safetensors' copy-on-write map of the file and go to the device in the dtype
their component runs in, one at a time: on a GPU each is copied from the page cache into VRAM
(host memory never holds a second copy), on the CPU a tensor already in its dtype stays a view
of the mapped file (shared with the page cache, as diffusers and safetensors load it) and any
other is converted once. No float32 round trip. LoRA patches write private copies of the pages
they touch, never the file. Replace checkpoint files by renaming a new file over them (what
downloaders do; a mapped model keeps the old one and the model cache reloads on the new stamp);
truncating a file in place under a running CPU server pulls pages from under its cached models.
Keys nobody uses (EMA copies, training state) are never read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch


def read_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Key → shape, and the `__metadata__` strings, without reading any tensor data."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        return shapes, dict(f.metadata() or {})


def read_checkpoint(
    path: Path, device: torch.device, dtype_for: Callable[[str], torch.dtype | None]
) -> dict[str, torch.Tensor]:
    """Every tensor `dtype_for(key)` wants, as that dtype on `device` (None: skip; integer tensors keep theirs)."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 - not a dict
            dtype = dtype_for(key)
            if dtype is None:
                continue
            t = f.get_tensor(key)
            out[key] = t.to(device, dtype) if t.is_floating_point() else t.to(device)
    return out
