"""`make-test-model --full-size`: random-weight checkpoints with the real SD1.5 / SDXL / refiner sizes.

For load and switch benchmarks only (tests keep the tiny models). The files have exactly the key
layout and shapes of the published single-file checkpoints (fp16, no `sdbridge.*` header keys), so
they load through the packaged real configs like a downloaded file. They are streamed to disk
tensor by tensor: shapes come from modules built on the meta device and values are slices of one
small random pool, so writing a 6.9 GB SDXL file needs neither its size in memory nor minutes of
random-number generation.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import torch

from . import arch, ldm_keys
from .testnets import from_config, text_model

FULL_SIZE_ARCHS = ("sd15", "sdxl", "sdxl-refiner")
_POOL = 1 << 22  # random values shared by every tensor, each starting elsewhere in them


def layout(family: arch.Family) -> dict[str, torch.Size]:
    """LDM key → shape of a real `family` checkpoint (meta tensors: nothing is allocated)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cfg = family.configs
    with torch.device("meta"):
        unet = from_config(UNet2DConditionModel, cfg["unet"]).state_dict()
        vae = from_config(AutoencoderKL, cfg["vae"]).state_dict()
        te = text_model(cfg["text_encoder"]).state_dict() if "text_encoder" in cfg else None
        te2 = text_model(cfg["text_encoder_2"]).state_dict() if "text_encoder_2" in cfg else None
        up_attn = ["CrossAttn" in t for t in cfg["unet"]["up_block_types"]]
        sd = ldm_keys.unet_to_ldm(unet, cfg["unet"]["layers_per_block"], up_attn)
        sd |= ldm_keys.vae_to_ldm(vae, len(cfg["vae"]["block_out_channels"]))
        if family.refiner:
            assert te2 is not None
            sd |= ldm_keys.open_clip_to_ldm(te2, "conditioner.embedders.0.model.")
        elif family.xl:
            assert te is not None and te2 is not None
            sd |= ldm_keys.clip_to_ldm(te, "conditioner.embedders.0.")
            sd |= ldm_keys.open_clip_to_ldm(te2, "conditioner.embedders.1.model.")
        else:
            assert te is not None
            sd |= ldm_keys.clip_to_ldm(te, "cond_stage_model.")
    return {k: v.shape for k, v in sd.items()}


def _values(key: str, shape: torch.Size, pool: torch.Tensor) -> Iterator[bytes]:
    """Plausible fp16 values: 1-D weights (all norms in SD) 1, biases 0, matrices/kernels ~ N(0, 1/fan_in)."""
    n = shape.numel()
    if len(shape) == 1:
        fill = 1.0 if key.endswith("weight") else 0.0
        yield torch.full((n,), fill, dtype=torch.float16).numpy().tobytes()
        return
    scale = shape[1:].numel() ** -0.5
    start = zlib.crc32(key.encode()) % _POOL  # stable across runs (str hash is salted per process)
    for lo in range(0, n, _POOL):
        s, m = (start + lo) % _POOL, min(_POOL, n - lo)
        yield (pool[s : s + m] * scale).to(torch.float16).numpy().tobytes()


def write_full_size(out_dir: Path, arch_name: str, name: str | None = None, seed: int = 0) -> Path:
    """Stream a random-weight `arch_name` checkpoint of the real size to `out_dir` (safetensors, fp16)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or 'full-' + arch_name}.safetensors"
    return stream_checkpoint(path, arch.REAL[arch_name], seed)


def stream_checkpoint(path: Path, family: arch.Family, seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """Write `family`'s random-weight checkpoint to `path` tensor by tensor (via a `.partial` file)."""
    shapes = layout(family)
    header: dict[str, object] = {}
    offset = 0
    for key, shape in shapes.items():
        size = shape.numel() * 2
        header[key] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    pool = torch.randn(_POOL, generator=torch.Generator().manual_seed(seed)).repeat(2)  # any window of _POOL
    tmp = path.with_suffix(".partial")
    with tmp.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, shape in shapes.items():
            for piece in _values(key, shape, pool):
                f.write(piece)
    tmp.replace(path)
    return path
