"""`sdbridge generate` (txt2img / img2img with the model and prompt features) and `sdbridge models`.

Feature options: VAE, refiner, hires fix, blend, clip skip. LoRAs and embeddings need no option:
they are written in the prompt (`<lora:name:0.8>`, an embedding's name, `embedding:name`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ..client import Client, ServerError
from .options import add_command, add_connection_args, add_gen_args, add_region_args, gen_params, region_params
from .run import control_images, read_image, run_job


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


def cmd_generate(args: argparse.Namespace) -> int:
    params = gen_params(args) | {"batch": args.batch} | feature_params(args)
    if args.size:
        w, _, h = args.size.lower().partition("x")
        params |= {"width": int(w), "height": int(h)}
    imgs = control_images(args)
    if args.init:
        imgs["init"] = read_image(args.init)
        params["strength"] = args.strength
    if region_params(args, params, imgs, read_image) is not None:
        raise SystemExit("error: generate takes --region PROMPT:MASK.png (a rectangle is for upscale)")
    return run_job(args, "generate", params, imgs, None)


def cmd_models(args: argparse.Namespace) -> int:
    async def go() -> dict[str, Any]:
        client = await Client.connect(args.url, args.token)
        await client.close()
        return client.welcome

    try:
        welcome = asyncio.run(go())
    except (OSError, ServerError) as exc:
        print(f"error: cannot reach the server at {args.url}: {exc}", file=sys.stderr)
        return 3
    print(f"{welcome['server']} on {welcome['device']}; jobs: {', '.join(welcome['jobs'])}")
    loaded = {r["name"]: r["where"] for r in welcome.get("resident", []) if not r.get("refiner")}
    for m in welcome["models"]:
        mark = "*" if m["name"] == welcome.get("model") else " "
        where = f"  loaded ({loaded[m['name']]})" if m["name"] in loaded else ""
        print(f"{mark} {m['name']:40s} {m['family']:14s} native {m['native']}{where}")
    for r in welcome.get("resident", []):
        if r.get("refiner"):
            print(f"  {r['name']:40s} {'refiner':14s} loaded ({r['where']})")
    for c in welcome.get("controls", []):
        print(f"  {c['name']:40s} {c['type']:14s} {c['family']:6s} {c['kind'] or ''}")
    workers = welcome.get("workers", [])
    if len(workers) > 1 or any(not w["id"].startswith("local:") for w in workers):
        for w in workers:
            job = f", running {w['job']}" if w.get("job") else ""
            held = ", ".join(w["resident"]) or "no model"
            print(f"worker {w['id']} on {w['host']}: {w['device']}, {w['state']}{job}; {held}")
    return 0


def register(sub: Any) -> None:
    p = add_command(sub, "generate", "txt2img / img2img")
    add_gen_args(p)
    p.add_argument("--size", help="WxH, e.g. 512x768 (rounded to multiples of 8)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--init", type=Path, help="init image for img2img")
    p.add_argument("--strength", type=float, default=0.75)
    add_region_args(p)
    add_feature_args(p)
    p.set_defaults(func=cmd_generate)
    p = add_command(sub, "models", "list the server's models")
    add_connection_args(p)
    p.set_defaults(func=cmd_models)
