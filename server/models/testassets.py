"""Tiny LoRA / embedding / VAE files for tests, in the exact layouts users download.

- `lora-sd15`: kohya (`lora_unet_down_blocks_…` diffusers-named UNet paths, `lora_te_`), rank 4, alpha 2.
- `lora-sd15-diffusers`: diffusers/PEFT (`unet.….lora_A.weight` / `lora_B`, `text_encoder.…`).
- `lora-sdxl`: kohya SDXL (`lora_unet_input_blocks_4_1_…` LDM-named paths, `lora_te1_` / `lora_te2_`).
- `embedding-sd15`: A1111 `.pt` (`string_to_param: {"*": [n, dim]}`); `embedding-sdxl`: `.safetensors`
  with `clip_l` / `clip_g`.
- `vae-sd15`: an LDM-layout VAE without the `first_stage_model.` prefix (as VAE downloads are).
Layers touched: attention projections, 1x1 `proj_in`/`proj_out`, 3x3 resnet `conv1`, text-encoder
attention and MLP — every shape the patcher supports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from . import arch, ldm_keys
from .lora import _unet_ldm_names
from .testnets import from_config, text_model

_UNET_LAYERS = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
    "proj_in",
    "proj_out",
    "conv1",
)
_TE_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def _factors(weight: torch.Tensor, rank: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    out, fan_in = weight.shape[0], weight[0].numel()
    if weight.ndim == 4:
        down = torch.randn(rank, *weight.shape[1:], generator=gen) / fan_in**0.5
        up = torch.randn(out, rank, 1, 1, generator=gen) / rank**0.5
    else:
        down = torch.randn(rank, fan_in, generator=gen) / fan_in**0.5
        up = torch.randn(out, rank, generator=gen) / rank**0.5
    return down, up


def _modules(model: torch.nn.Module, wanted: tuple[str, ...]) -> list[tuple[str, torch.Tensor]]:
    return [(n, m.weight) for n, m in model.named_modules() if n and n.endswith(wanted) and hasattr(m, "weight")]


def _build(family: arch.Family) -> tuple[Any, list[Any]]:
    from diffusers import UNet2DConditionModel

    unet = from_config(UNet2DConditionModel, family.configs["unet"])
    tes = [text_model(family.configs[k]) for k in ("text_encoder", "text_encoder_2") if k in family.configs]
    return unet, tes


def lora_state_dict(family: arch.Family, style: str, seed: int, rank: int = 4, alpha: float = 2.0) -> dict:
    """Random LoRA factors for `family`'s layers; style: kohya | kohya-ldm | diffusers."""
    gen = torch.Generator().manual_seed(seed)
    unet, tes = _build(family)
    ldm = {v: k for k, v in _unet_ldm_names(unet).items()} if style == "kohya-ldm" else {}
    sd: dict[str, torch.Tensor] = {}

    def put(prefix_kohya: str, prefix_diff: str, name: str, weight: torch.Tensor) -> None:
        down, up = _factors(weight, rank, gen)
        if style == "diffusers":
            base = f"{prefix_diff}.{name}"
            sd.update({f"{base}.lora_A.weight": down, f"{base}.lora_B.weight": up})
        else:
            flat = name.replace(".", "_")
            base = f"{prefix_kohya}_{ldm.get(flat, flat)}"
            sd.update({f"{base}.lora_down.weight": down, f"{base}.lora_up.weight": up})
            sd[f"{base}.alpha"] = torch.tensor(alpha)

    for name, w in _modules(unet, _UNET_LAYERS):
        put("lora_unet", "unet", name, w)
    for i, te in enumerate(tes):
        kohya = "lora_te" if len(tes) == 1 else f"lora_te{i + 1}"
        diff = "text_encoder" if i == 0 else "text_encoder_2"
        for name, w in _modules(te, _TE_LAYERS):
            full = name if name.startswith("text_model.") else "text_model." + name
            put(kohya, diff, full, w)
    return {k: v.contiguous() for k, v in sd.items()}


def write_lora(out_dir: Path, name: str | None, seed: int, family: str, style: str, arch_name: str) -> Path:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or arch_name}.safetensors"
    meta = {"ss_network_module": "networks.lora", "sdbridge.note": "random LoRA from sdbridge make-test-model"}
    save_file(lora_state_dict(arch.TINY[family], style, seed), str(path), metadata=meta)
    return path


def write_embedding(out_dir: Path, name: str | None, seed: int, family: str, arch_name: str, vectors: int = 2) -> Path:
    gen = torch.Generator().manual_seed(seed)
    cfg = arch.TINY[family].configs
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or arch_name
    # Norms like real token embeddings of the tiny encoders (randn * 0.02 init would be invisible).
    if family == "sd15":
        vec = torch.randn(vectors, cfg["text_encoder"]["hidden_size"], generator=gen)
        path = out_dir / f"{stem}.pt"
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": stem, "step": 0}, path)
        return path
    from safetensors.torch import save_file

    path = out_dir / f"{stem}.safetensors"
    l_dim, g_dim = cfg["text_encoder"]["hidden_size"], cfg["text_encoder_2"]["hidden_size"]
    vecs = {"clip_l": torch.randn(vectors, l_dim, generator=gen), "clip_g": torch.randn(vectors, g_dim, generator=gen)}
    save_file(vecs, str(path))
    return path


def write_vae(out_dir: Path, name: str | None, seed: int, family: str, arch_name: str) -> Path:
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    torch.manual_seed(seed + 1000)  # not the checkpoint's own VAE
    cfg = arch.TINY[family].configs["vae"]
    vae = from_config(AutoencoderKL, cfg)
    sd = ldm_keys.vae_to_ldm(vae.state_dict(), len(cfg["block_out_channels"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or arch_name}.safetensors"
    save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in sd.items()}, str(path))
    return path


def _w(fn: Any, *args: Any) -> Any:
    return lambda d, n, s: fn(d, n, s, *args)


WRITERS = {
    "lora-sd15": _w(write_lora, "sd15", "kohya", "lora-sd15"),
    "lora-sd15-diffusers": _w(write_lora, "sd15", "diffusers", "lora-sd15-diffusers"),
    "lora-sdxl": _w(write_lora, "sdxl", "kohya-ldm", "lora-sdxl"),
    "embedding-sd15": _w(write_embedding, "sd15", "embedding-sd15"),
    "embedding-sdxl": _w(write_embedding, "sdxl", "embedding-sdxl"),
    "vae-sd15": _w(write_vae, "sd15", "vae-sd15"),
}
