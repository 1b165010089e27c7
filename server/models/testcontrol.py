"""Tiny random ControlNet, IP-Adapter and CLIP vision files for tests, in the layouts users download.

- `controlnet-sd15`: the SD1.5 v1.1 single-file layout (`control_model.input_blocks…`,
  `input_hint_block`, `zero_convs`, `middle_block_out`), named like `control_v11p_sd15_canny`;
- `controlnet-sdxl`: the diffusers single-file layout SDXL ControlNets ship in;
- `clip-vision`: a `CLIPVisionModelWithProjection` in the transformers layout (`clip_vision/`);
- `ipadapter-sd15` / `ipadapter-sdxl`: plain IP-Adapters (`image_proj.proj`/`norm`, `ip_adapter.N.to_k_ip`
  numbered as the release numbers them), reading the tiny encoder's projection.
The topology mirrors the tiny checkpoints of `arch.TINY`; the configs travel in the header
(`sdbridge.config`) as with tiny checkpoints. The zero-initialised output convolutions of a fresh
ControlNet are randomised, so a tiny control visibly changes the picture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from . import arch, ldm_keys
from .controlnet import controlnet_config
from .testnets import from_config

TINY_CONDITIONING = (8, 8, 16, 16)  # 3 stride-2 stages: the hint reaches latent resolution, as in the real ones
TINY_CLIP_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "patch_size": 8,
    "image_size": 32,
    "projection_dim": 16,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
_NOTE = "random weights from sdbridge make-test-model"


def tiny_controlnet_config(family: str) -> arch.Config:
    return controlnet_config(arch.TINY[family].configs["unet"], TINY_CONDITIONING)


def _randomise_zero_convs(net: torch.nn.Module, gen: torch.Generator) -> None:
    zero = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
    for conv in zero:
        fan_in = conv.weight[0].numel()
        conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        conv.bias.data = torch.randn(conv.bias.shape, generator=gen) * 0.1


def controlnet_to_ldm(sd: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """ControlNetModel keys → the v1.1 single-file `control_model.*` keys."""
    out: dict[str, torch.Tensor] = {}
    unet_part = {}
    for key, value in sd.items():
        head, _, tail = key.partition(".")
        if head == "controlnet_cond_embedding":
            block, _, rest = tail.partition(".")
            if block == "conv_in":
                out[f"input_hint_block.0.{rest}"] = value
            elif block == "conv_out":
                out[f"input_hint_block.14.{rest}"] = value
            else:  # blocks.J.weight → input_hint_block.2(J+1)
                j, _, rest = rest.partition(".")
                out[f"input_hint_block.{2 * (int(j) + 1)}.{rest}"] = value
        elif head == "controlnet_down_blocks":
            i, _, rest = tail.partition(".")
            out[f"zero_convs.{i}.0.{rest}"] = value
        elif head == "controlnet_mid_block":
            out[f"middle_block_out.0.{tail}"] = value
        else:
            unet_part[key] = value
    for key, value in ldm_keys.unet_to_ldm(unet_part, layers_per_block, []).items():
        out[key.removeprefix("model.diffusion_model.")] = value
    return {"control_model." + k: v.contiguous() for k, v in out.items()}


def write_test_controlnet(out_dir: Path, name: str | None, seed: int, family: str) -> Path:
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    config = tiny_controlnet_config(family)
    net = from_config(ControlNetModel, config)
    _randomise_zero_convs(net, torch.Generator().manual_seed(seed + 1))
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if family != "sdxl":  # SD1.5 ControlNets are shipped in the LDM layout, SDXL ones in diffusers'
        sd = controlnet_to_ldm(sd, config["layers_per_block"])
    default = "tiny-control_v11p_sd15_canny" if family == "sd15" else "tiny-controlnet-canny-sdxl"
    meta = {"sdbridge.family": family, "sdbridge.config": json.dumps(config), "sdbridge.note": _NOTE}
    return _save(out_dir, name or default, sd, meta, save_file)


def write_test_clip_vision(out_dir: Path, name: str | None, seed: int) -> Path:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION))
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"sdbridge.config": json.dumps(TINY_CLIP_VISION), "sdbridge.note": _NOTE}
    return _save(out_dir, name or "tiny-clip-vision", sd, meta, save_file)


def ipadapter_state(family: str, seed: int, tokens: int = 4) -> dict[str, torch.Tensor]:
    """A plain IP-Adapter for the tiny `family` UNet, reading the tiny encoder's projection."""
    from diffusers import UNet2DConditionModel

    unet_cfg = arch.TINY[family].configs["unet"]
    unet = from_config(UNet2DConditionModel, unet_cfg)
    gen = torch.Generator().manual_seed(seed)
    cross, dim = unet_cfg["cross_attention_dim"], TINY_CLIP_VISION["projection_dim"]
    sd = {
        "image_proj.proj.weight": torch.randn(tokens * cross, dim, generator=gen) / dim**0.5,
        "image_proj.proj.bias": torch.zeros(tokens * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1  # the release numbers every attention layer; only the cross-attention (odd) ones have weights
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        path = name.removesuffix(".processor")
        hidden = unet.get_submodule(path).to_q.out_features
        for proj in ("to_k_ip", "to_v_ip"):
            sd[f"ip_adapter.{key_id}.{proj}.weight"] = torch.randn(hidden, cross, generator=gen) / cross**0.5
        key_id += 2
    return {k: v.contiguous() for k, v in sd.items()}


def write_test_ipadapter(out_dir: Path, name: str | None, seed: int, family: str) -> Path:
    from safetensors.torch import save_file

    default = "tiny-ip-adapter_sd15" if family == "sd15" else "tiny-ip-adapter_sdxl"
    meta = {"sdbridge.family": family, "sdbridge.note": _NOTE}
    return _save(out_dir, name or default, ipadapter_state(family, seed), meta, save_file)


def _save(out_dir: Path, stem: str, sd: dict[str, torch.Tensor], meta: dict[str, str], save: Any) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}.safetensors"
    save(sd, str(path), metadata=meta)
    return path


# `make-test-model --arch` writers: (out_dir, name, seed) -> path. Pass DIR/ControlNet, DIR/ipadapter,
# DIR/clip_vision so discovery finds them.
WRITERS = {
    "controlnet-sd15": lambda d, n, s: write_test_controlnet(d, n, s, "sd15"),
    "controlnet-sdxl": lambda d, n, s: write_test_controlnet(d, n, s, "sdxl"),
    "clip-vision": write_test_clip_vision,
    "ipadapter-sd15": lambda d, n, s: write_test_ipadapter(d, n, s, "sd15"),
    "ipadapter-sdxl": lambda d, n, s: write_test_ipadapter(d, n, s, "sdxl"),
}
