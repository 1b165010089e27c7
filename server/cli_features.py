"""`sdbridge generate` options for the model/prompt features (VAE, refiner, hires fix, blend, clip skip).

LoRAs and embeddings need no option: they are written in the prompt (`<lora:name:0.8>`, an
embedding's name, `embedding:name`).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_feature_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and prompt features")
    g.add_argument("--clip-skip", type=int, help="skip the last N-1 text-encoder layers (A1111 'clip skip')")
    g.add_argument("--vae", help="VAE override, a name from the server's vaes list")
    g.add_argument("--blend", metavar="PROMPT", help="mix a second prompt's embeddings into the prompt")
    g.add_argument("--blend-ratio", type=float, default=0.5, help="share of --blend (0 … 1, default 0.5)")
    g.add_argument("--refiner", help="SDXL refiner (from the server's refiners list) to finish the image")
    g.add_argument("--refiner-switch", type=float, help="fraction of the steps the base does (default 0.8)")
    g.add_argument("--hires-scale", type=float, help="hires fix: upscale the first pass by this factor")
    g.add_argument("--hires-steps", type=int, help="hires fix: steps of the second pass (default: --steps)")
    g.add_argument("--hires-strength", type=float, help="hires fix: denoising strength (default 0.5)")
    g.add_argument("--hires-upscaler", help="lanczos | bicubic | nearest | latent | an upscaler model name")
    g.add_argument(
        "--hires-tile",
        choices=("auto", "on", "off"),
        default="auto",
        help="tile the second pass with the fused tiler (auto: when larger than 2x2 native)",
    )


def feature_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.clip_skip is not None:
        params["clip_skip"] = args.clip_skip
    if args.vae:
        params["vae"] = args.vae
    if args.blend is not None:
        params["blend"] = {"prompt": args.blend, "ratio": args.blend_ratio}
    if args.refiner:
        params["refiner"] = args.refiner
        if args.refiner_switch is not None:
            params["refiner_switch"] = args.refiner_switch
    if args.hires_scale is not None:
        hires: dict[str, Any] = {"scale": args.hires_scale}
        for key in ("steps", "strength", "upscaler"):
            value = getattr(args, f"hires_{key}")
            if value is not None:
                hires[key] = value
        if args.hires_tile != "auto":
            hires["tile"] = args.hires_tile == "on"
        params["hires"] = hires
    return params
