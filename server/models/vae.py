"""VAE override: a separate VAE file swapped in for one job (A1111 `VAE/`, ComfyUI `vae/`).

Files are LDM-layout `.safetensors`, with or without the `first_stage_model.` prefix, or diffusers
layout; they are loaded with the resident model's own VAE config (never the hub). The last
override stays cached on the model, so repeated jobs with the same VAE don't reload it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from .files import find_files

VAE_DIRS = ("VAE", "vae", "models/VAE", "models/vae")
SUFFIXES = (".safetensors",)


def discover_vaes(root: Path) -> dict[str, Path]:
    return find_files(root, VAE_DIRS, SUFFIXES)


def load_vae(path: Path, config: dict[str, Any]) -> Any:
    from diffusers import AutoencoderKL
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())  # noqa: SIM118 - not a dict
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in keys:  # diffusers layout
        from safetensors.torch import load_file

        vae = AutoencoderKL.from_config(cfg)
        vae.load_state_dict(load_file(str(path)))
        return vae
    if not any(k.startswith(("encoder.", "first_stage_model.encoder.")) for k in keys):
        raise ValueError(f"{path.name} is not a VAE (no encoder.* keys)")
    with tempfile.TemporaryDirectory(prefix="sdbridge-vae-") as tmp:
        (Path(tmp) / "vae").mkdir()
        (Path(tmp) / "vae" / "config.json").write_text(json.dumps(config))
        return AutoencoderKL.from_single_file(
            str(path), config=tmp, subfolder="vae", local_files_only=True, torch_dtype=torch.float32
        )


def use_vae(model: Any, name: str, path: Path) -> None:
    """Swap `path`'s VAE into `model` for this job; the model's undo list swaps the original back."""
    cached = model.extras.get("vae_override")
    if cached is None or cached[0] != str(path) or cached[1] != path.stat().st_mtime:
        vae = load_vae(path, model.family.configs["vae"] or dict(model.vae.config))
        vae.to(model.device, model.vae_dtype).eval().requires_grad_(False)
        cached = (str(path), path.stat().st_mtime, vae)
        model.extras["vae_override"] = cached
    original = model.vae
    model.vae = cached[2]

    def restore() -> None:
        model.vae = original

    model.push_undo(restore)
