"""Regional prompts: what masked cross-attention costs per UNet evaluation, counted (no GPU, no weights).

The full-size SD1.5 and SDXL UNets are built from their published configs on the `meta` device (shapes
only) and one guided call (CFG batch of 2) is run under `torch.utils.flop_counter.FlopCounterMode`,
plain and with 1, 2, 4 and 8 regions through the real region processors (`server.pipelines.regionattn`)
fed with a real payload (`server.pipelines.regions.grids`). Regions never add a UNet evaluation; this
counts what they add inside one: FLOPs of the whole call and of its cross-attention layers.

    python -m bench.regions [--regions 1 2 4 8]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from server.models import arch
from server.models.testnets import from_config
from server.pipelines.regionattn import RegionAttnProcessor
from server.pipelines.regions import grids

META = torch.device("meta")
# (label, family, canvas px)
CASES = [("SD1.5 512x512", "sd15", 512), ("SDXL 1024x1024", "sdxl", 1024)]


def _unet(family: str) -> Any:
    from diffusers import UNet2DConditionModel

    with META:
        return from_config(UNet2DConditionModel, arch.REAL[family].configs["unet"]).eval()


def _inputs(unet: Any, px: int, prompts: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    cfg = unet.config
    lat = px // 8
    x = torch.zeros(2, 4, lat, lat, device=META)
    text = torch.zeros(2, 77, cfg.cross_attention_dim, device=META)
    kw: dict[str, Any] = {"encoder_hidden_states": text}
    if cfg.addition_embed_type == "text_time":
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        kw["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(2, pooled, device=META),
            "time_ids": torch.zeros(2, 6, device=META),
        }
    if prompts > 1:
        levels = len(cfg.block_out_channels)
        weight = {str(h * w): torch.zeros(2, h * w, prompts, device=META) for h, w in grids(lat, lat, levels)}
        texts = {f"{p:02d}": text for p in range(prompts)}
        kw["cross_attention_kwargs"] = {"regions": {"text": texts, "weight": weight}}
    return x, torch.zeros((), device=META), kw


def count(unet: Any, px: int, prompts: int) -> tuple[float, float]:
    """(GFLOPs of the call, GFLOPs in its cross-attention layers)."""
    x, t, kw = _inputs(unet, px, prompts)
    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        unet(x, t, **kw)
    cross = sum(sum(ops.values()) for name, ops in mode.get_flop_counts().items() if name.endswith("attn2"))
    return mode.get_total_flops() / 1e9, cross / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, nargs="+", default=[1, 2, 4, 8])
    args = ap.parse_args()
    print("| model, canvas | regions | UNet evals/step | GFLOPs per guided call | extra | in cross-attention |")
    print("|---|---|---|---|---|---|")
    for label, family, px in CASES:
        unet = _unet(family)
        base, base_cross = count(unet, px, 1)
        print(f"| {label} | 0 | 1 | {base:,.0f} | — | {base_cross:,.0f} |")
        unet.set_attn_processor({k: RegionAttnProcessor(p) for k, p in unet.attn_processors.items()})
        for r in args.regions:
            total, cross = count(unet, px, 1 + r)
            print(f"| {label} | {r} | 1 | {total:,.0f} | +{100 * (total - base) / base:.2f}% | {cross:,.0f} |")


if __name__ == "__main__":
    main()
