"""`sdbridge upscale`: upscale an image (upscaler model or Lanczos) and refine it with the fused tiler.

Writes the full composited image: the server is asked for `output: "full"`, so with `--mask` or
`--region X,Y,W,H` the regenerated area comes back already blended into the server's upscale (pixels
outside the blend region are the upscaler's, bit for bit). `--region PROMPT:MASK.png` (repeatable)
gives the refine a prompt per area.
"""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_command, add_gen_args, add_image_args, add_region_args, gen_params, region_params, set_params
from .run import input_images, read_image, run_job


def cmd_upscale(args: argparse.Namespace) -> int:
    params = gen_params(args) | {"scale": args.scale, "output": "full"}
    set_params(params, args, ("strength", "tile", "upscaler", "tiler"))
    if args.no_anchor:
        params["anchor"] = False
    images = input_images(args)
    rect = region_params(args, params, images, read_image)
    if rect is not None:
        params["region"] = rect
    return run_job(args, "upscale", params, images, None)


def register(sub: Any) -> None:
    p = add_command(sub, "upscale", "upscale an image xSCALE and refine it tile by tile (or only a masked region)")
    add_image_args(p, "regenerate only the selected area (white = selected, soft ok)")
    add_gen_args(p, prompt_required=False)
    p.add_argument("--scale", type=float, default=2.0, help="upscale factor (default 2)")
    p.add_argument("--strength", type=float, help="refine strength (default 0.35; 0 = upscaler only)")
    p.add_argument("--tile", type=int, help="UNet tile in output px, multiple of 64 (default: the model's native)")
    p.add_argument("--upscaler", help="upscaler model from the server's upscalers list (default: Lanczos)")
    add_region_args(p, rect=True)
    p.add_argument("--no-anchor", action="store_true", help="no low-frequency colour anchoring to the upscale")
    p.add_argument("--tiler", choices=("fused", "naive"), help=argparse.SUPPRESS)  # naive: comparisons only
    p.set_defaults(func=cmd_upscale)
