"""Diffusers → original LDM ("single-file") state-dict layout.

Used by the test-model generator so tiny checkpoints have exactly the key layout of the
`.safetensors` files users download (A1111 / ComfyUI / Civitai) and go through the real loader.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _resnet_tail(tail: str) -> str:
    head, _, rest = tail.partition(".")
    return f"{_RESNET.get(head, head)}.{rest}"


def unet_to_ldm(sd: dict[str, Tensor], layers_per_block: int, up_attn: list[bool]) -> dict[str, Tensor]:
    """Map UNet2DConditionModel keys to `model.diffusion_model.*` keys."""
    n = layers_per_block + 1
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        new: str | None = None
        for src, dst in _UNET_TOP.items():
            if key.startswith(src + "."):
                new = dst + key[len(src) :]
        if new is None and parts[0] == "down_blocks":
            i, kind, j, tail = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{n * i + j + 1}.0.{_resnet_tail(tail)}"
            elif kind == "attentions":
                new = f"input_blocks.{n * i + j + 1}.1.{tail}"
            else:  # downsamplers.0.conv
                new = f"input_blocks.{n * (i + 1)}.0.op.{'.'.join(parts[5:])}"
        elif new is None and parts[0] == "up_blocks":
            i, kind, j, tail = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"output_blocks.{n * i + j}.0.{_resnet_tail(tail)}"
            elif kind == "attentions":
                new = f"output_blocks.{n * i + j}.1.{tail}"
            else:  # upsamplers.0.conv: after the attention when the level has one
                slot = 2 if up_attn[i] else 1
                new = f"output_blocks.{n * i + layers_per_block}.{slot}.{'.'.join(parts[4:])}"
        elif new is None and parts[0] == "mid_block":
            kind, j, tail = parts[1], int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.1.{tail}" if kind == "attentions" else f"middle_block.{2 * j}.{_resnet_tail(tail)}"
        if new is None:
            raise KeyError(f"unmapped UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {"conv_norm_out": "norm_out", "conv_shortcut": "nin_shortcut"}


def vae_to_ldm(sd: dict[str, Tensor], levels: int) -> dict[str, Tensor]:
    """Map AutoencoderKL keys to `first_stage_model.*` keys (mid attention as 1×1 convs)."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        new = key
        for src, dst in _VAE_TOP.items():
            new = new.replace(src, dst)
        parts = new.split(".")
        if parts[1] == "down_blocks":
            i, kind, rest = parts[2], parts[3], parts[4:]
            new = ".".join(
                [parts[0], "down", i] + (["block"] + rest if kind == "resnets" else ["downsample"] + rest[1:])
            )
        elif parts[1] == "up_blocks":
            i, kind, rest = str(levels - 1 - int(parts[2])), parts[3], parts[4:]
            new = ".".join([parts[0], "up", i] + (["block"] + rest if kind == "resnets" else ["upsample"] + rest[1:]))
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                new = ".".join([parts[0], "mid", f"block_{int(parts[3]) + 1}"] + parts[4:])
            else:
                tail = ".".join(parts[4:])
                for src, dst in _VAE_ATTN.items():
                    if tail.startswith(src + "."):
                        tail = dst + tail[len(src) :]
                new = f"{parts[0]}.mid.attn_1.{tail}"
                if value.ndim == 2:
                    value = value[:, :, None, None]
        out["first_stage_model." + new] = value.contiguous()
    return out


def clip_to_ldm(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """HF CLIPTextModel keys → `<prefix>transformer.text_model.*` (transformers ≥5.6 drops `text_model.`)."""
    return {
        prefix + "transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
        for k, v in sd.items()
        if not k.endswith("position_ids")
    }


_OPENCLIP = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_to_ldm(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """CLIPTextModelWithProjection → open_clip layout (fused in_proj, transposed text_projection)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}
    out = {
        prefix + "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": sd.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": sd.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": sd.pop("final_layer_norm.bias"),
        prefix + "text_projection": sd.pop("text_projection.weight").T.contiguous(),
    }
    layers = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")}
    for i in sorted(layers):
        src = f"encoder.layers.{i}."
        dst = f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [sd.pop(f"{src}self_attn.{p}_proj.{kind}") for p in "qkv"]
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, 0)
        for k in [k for k in sd if k.startswith(src)]:
            tail = k[len(src) :]
            for a, b in _OPENCLIP.items():
                tail = tail.replace(a, b)
            out[dst + tail] = sd.pop(k)
    if sd:
        raise KeyError(f"unmapped text-encoder keys: {sorted(sd)[:5]}")
    return out
