"""`sdbridge upscale`: upscale an image (upscaler model or Lanczos) and refine it with the fused tiler.

Writes the full composited image: the server is asked for `output: "full"`, so with `--mask` or
`--region` the regenerated area comes back already blended into the server's upscale (pixels
outside the blend region are the upscaler's, bit for bit).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .cli_client import add_gen_args, gen_params, read_image, run_job


def _region(text: str) -> dict[str, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected X,Y,W,H in source pixels") from None
    return {"x": x, "y": y, "w": w, "h": h}


def cmd_upscale(args: argparse.Namespace) -> int:
    params: dict[str, Any] = gen_params(args) | {"scale": args.scale, "output": "full"}
    for key in ("strength", "tile", "upscaler", "region", "tiler"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    if args.no_anchor:
        params["anchor"] = False
    imgs = {"image": read_image(args.image)}
    if args.mask:
        imgs["mask"] = read_image(args.mask)
    return run_job(args, "upscale", params, imgs, None)


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(sub, "upscale", "upscale an image xSCALE and refine it tile by tile (or only a masked region)")
    p.add_argument("image", type=Path)
    add_gen_args(p, prompt_required=False)
    p.add_argument("--scale", type=float, default=2.0, help="upscale factor (default 2)")
    p.add_argument("--strength", type=float, help="refine strength (default 0.35; 0 = upscaler only)")
    p.add_argument("--tile", type=int, help="UNet tile in output px, multiple of 64 (default: the model's native)")
    p.add_argument("--upscaler", help="upscaler model from the server's upscalers list (default: Lanczos)")
    p.add_argument("--mask", type=Path, help="regenerate only the selected area (white = selected, soft ok)")
    p.add_argument("--region", type=_region, metavar="X,Y,W,H", help="regenerate only this source rectangle")
    p.add_argument("--no-anchor", action="store_true", help="no low-frequency colour anchoring to the upscale")
    p.add_argument("--tiler", choices=("fused", "naive"), help=argparse.SUPPRESS)  # naive: comparisons only
    p.set_defaults(func=cmd_upscale)
