"""`sdbridge make-test-model`: tiny random-weight checkpoints in the real single-file layout.

They exercise the real loader and pipelines; their pictures are noise. The family and the tiny
configs are recorded in the safetensors header (`sdbridge.*` keys) — real checkpoints carry no
such keys and are loaded with the packaged configs of `arch.REAL` instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from . import arch, ldm_keys
from .restorer import write_test_restorer
from .testassets import WRITERS
from .testnets import from_config, text_model
from .upscaler import write_test_upscaler

SD_ARCHS = ("sd15", "sdxl", "sd15-inpaint", "sdxl-inpaint", "sdxl-refiner")


def build_state_dict(family: arch.Family, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for `family` in LDM single-file layout."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    cfg = family.configs
    unet = from_config(UNet2DConditionModel, cfg["unet"])
    vae = from_config(AutoencoderKL, cfg["vae"])
    up_attn = ["CrossAttn" in t for t in cfg["unet"]["up_block_types"]]
    sd = ldm_keys.unet_to_ldm(unet.state_dict(), cfg["unet"]["layers_per_block"], up_attn)
    sd |= ldm_keys.vae_to_ldm(vae.state_dict(), len(cfg["vae"]["block_out_channels"]))
    if family.refiner:  # bigG alone, at embedders.0
        te2 = text_model(cfg["text_encoder_2"]).state_dict()
        sd |= ldm_keys.open_clip_to_ldm(te2, "conditioner.embedders.0.model.")
        return {k: v.detach().contiguous() for k, v in sd.items()}
    te = text_model(cfg["text_encoder"]).state_dict()
    if family.xl:
        sd |= ldm_keys.clip_to_ldm(te, "conditioner.embedders.0.")
        te2 = text_model(cfg["text_encoder_2"]).state_dict()
        sd |= ldm_keys.open_clip_to_ldm(te2, "conditioner.embedders.1.model.")
    else:
        sd |= ldm_keys.clip_to_ldm(te, "cond_stage_model.")
    return {k: v.detach().contiguous() for k, v in sd.items()}


def write_sd_checkpoint(out_dir: Path, arch_name: str, name: str | None = None, seed: int = 0) -> Path:
    from safetensors.torch import save_file

    family = arch.TINY[arch_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or 'tiny-' + arch_name}.safetensors"
    save_file(build_state_dict(family, seed), str(path), metadata=header_metadata(family))
    return path


def header_metadata(family: arch.Family) -> dict[str, str]:
    """What a tiny checkpoint records in its header so the loader uses its small configs."""
    return {
        "sdbridge.family": family.name,
        "sdbridge.native": str(family.native),
        "sdbridge.configs": json.dumps(family.configs),
        "sdbridge.note": "random weights from sdbridge make-test-model: produces noise",
    }


Writer = Callable[[Path, "str | None", int], Path]


def _restorer(arch_name: str) -> Writer:
    def write(out_dir: Path, name: str | None, seed: int) -> Path:
        return write_test_restorer(out_dir, arch=arch_name, name=name, seed=seed)

    return write


# `make-test-model --arch` → writer(out_dir, name, seed). Other asset kinds register here too.
ARCHS: dict[str, Writer] = {a: (lambda d, n, s, a=a: write_sd_checkpoint(d, a, n, s)) for a in SD_ARCHS}
ARCHS |= {"gfpgan": _restorer("gfpgan"), "codeformer": _restorer("codeformer")}
ARCHS |= WRITERS  # lora-sd15, lora-sd15-diffusers, lora-sdxl, embedding-sd15/-sdxl, vae-sd15


def _upscaler(arch_name: str, spandrel_arch: str) -> Writer:
    def write(out_dir: Path, name: str | None, seed: int) -> Path:
        # A tiny 4x model; pass DIR/ESRGAN (or RealESRGAN, upscale_models) so discovery finds it.
        return write_test_upscaler(out_dir, name or f"tiny-{arch_name}", 4, arch=spandrel_arch, seed=seed)

    return write


ARCHS |= {"esrgan": _upscaler("esrgan", "esrgan"), "realesrgan-compact": _upscaler("realesrgan-compact", "compact")}
