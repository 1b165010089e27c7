"""Upscale benchmark: planner cost against Ultimate SD Upscale, and wall time fused vs naive tiler.

1. UNet cost per output megapixel, computed (no model needed): our tile plan (exact-fit uniform
   tiles, overlap by strength) against the Ultimate-SD-Upscale redraw formula
   ``ceil(W/tile) * ceil(H/tile) * steps * strength`` on the same job. Both as tile evaluations and
   as evaluated megapixels (USDU processes tile + 2x32 px padding, rounded up to 64 in A1111).
2. Wall time on this machine with the tiny test models through the real server job path
   (`upscale` job, `tiler: "fused"` vs the peers' `tiler: "naive"`: independent tiles, one seed,
   hard paste, one UNet call per tile), in the same run; prints the ratio last.

    python bench/upscale.py [--size 128] [--scale 2] [--runs 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402
from server.models.testmodels import write_sd_checkpoint  # noqa: E402
from server.pipelines.tiled import plan_for  # noqa: E402
from tiling.plan import usdu_evaluations  # noqa: E402
from tiling.steps import steps_run  # noqa: E402

USDU_PAD = 32  # USDU default padding (context around each tile)

# (label, family, native tile px, source px, scale)
JOBS = [
    ("SD1.5 1024²→2048²", "sd15", 512, 1024, 2),
    ("SD1.5 2048²→4096²", "sd15", 512, 2048, 2),
    ("SDXL 1024²→2048²", "sdxl", 1024, 1024, 2),
    ("SDXL 2048²→4096²", "sdxl", 1024, 2048, 2),
]


def ours(out_px: int, native_px: int, xl: bool, steps: int, strength: float) -> tuple[int, int, float, int]:
    """(tiles, tile evaluations, evaluated megapixels, tile px) for the plan the server makes."""
    model = SimpleNamespace(family=SimpleNamespace(native=native_px, xl=xl))
    plan = plan_for(model, out_px // 8, out_px // 8, strength)  # type: ignore[arg-type]
    evals = len(plan) * steps_run(steps, strength)
    return len(plan), evals, evals * plan.tile_w * plan.tile_h * 64 / 1e6, plan.tile_w * 8


def usdu(out_px: int, tile_px: int, steps: int, strength: float) -> tuple[int, float, float, float]:
    """(tiles, tile evaluations, evaluated megapixels, + half-tile seam fix MP) for USDU's redraw.

    The library formula (`tiling.plan.usdu_evaluations`) is the redraw pass alone; USDU needs a
    seam-fix pass to hide its seams, "half tile" adding (rows-1)*cols + rows*(cols-1) tiles
    (same processing size, seam-fix strength taken equal to the redraw's here).
    """
    n = math.ceil(out_px / tile_px)
    evals = usdu_evaluations(out_px, out_px, steps, strength, tile_px=tile_px)
    proc = math.ceil((tile_px + 2 * USDU_PAD) / 64) * 64  # A1111's processing size per tile
    seam_tiles = 2 * (n - 1) * n
    return n * n, evals, evals * proc * proc / 1e6, (n * n + seam_tiles) * steps * strength * proc * proc / 1e6


def cost_table(steps: int, strength: float) -> list[str]:
    lines = [
        f"UNet cost, {steps} steps at strength {strength} (no CFG doubling; both sides would double alike)",
        f"{'job':<20} {'ours tile':>9} {'tiles':>5} {'evals':>6} {'eval/MP':>8} {'MPeval/MP':>9} | "
        f"{'USDU tiles':>10} {'evals':>6} {'eval/MP':>8} {'MPeval/MP':>9} {'ratio':>6} | "
        f"{'+seamfix MPeval/MP':>18} {'ratio':>6}",
    ]
    for label, fam, native, src, scale in JOBS:
        out = src * scale
        mp = out * out / 1e6
        ot, oe, om, otile = ours(out, native, fam == "sdxl", steps, strength)
        ut, ue, um, us = usdu(out, native, steps, strength)
        lines.append(
            f"{label:<20} {otile:>9} {ot:>5} {oe:>6} {oe / mp:>8.2f} {om / mp:>9.2f} | "
            f"{ut:>10} {ue:>6.0f} {ue / mp:>8.2f} {um / mp:>9.2f} {um / om:>6.2f} | "
            f"{us / mp:>18.2f} {us / om:>6.2f}"
        )
    lines.append("MPeval/MP = megapixels the UNet processes per output megapixel (USDU tile + 2x32 px padding,")
    lines.append("rounded up to 64 as A1111 does); ratio = USDU / ours (> 1: ours cheaper). USDU tile = model native.")
    return lines


async def _job(url: str, params: dict, img: np.ndarray) -> tuple[float, dict]:
    h, w = img.shape[:2]
    async with await Client.connect(url) as client:
        t0 = time.perf_counter()
        res = await client.run(
            "upscale",
            {"result_format": "rgba8", **params},
            {"image": {"format": "rgba8", "w": w, "h": h, "data": img.tobytes()}},
        )
        return time.perf_counter() - t0, res


def wall(size: int, scale: float, runs: int, steps: int, strength: float, arch: str) -> list[str]:
    from skimage import data

    rgb = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.BICUBIC))
    img = np.dstack([rgb, np.full((size, size), 255, np.uint8)])
    with tempfile.TemporaryDirectory() as d:
        write_sd_checkpoint(Path(d), arch)
        server = start_server(Path(d))
        try:
            base = {
                "model": f"tiny-{arch}",
                "seed": 1,
                "steps": steps,
                "strength": strength,
                "scale": scale,
                "sampler": "DPM++ 2M",
            }
            asyncio.run(_job(server.url, base, img))  # warm-up: model load
            times: dict[str, list[float]] = {"fused": [], "naive": []}
            info = {}
            for _ in range(runs):
                for tiler in ("fused", "naive"):
                    dt, res = asyncio.run(_job(server.url, base | {"tiler": tiler}, img))
                    times[tiler].append(dt)
                    info = res["params"]
        finally:
            server.close()
    f, n = min(times["fused"]), min(times["naive"])
    out = int(size * scale)
    return [
        f"wall time, tiny-{arch}, {size}²→{out}² ({info['tiles']} tiles of {info['tile'][0]} px, "
        f"{info['steps_run']} steps, {info['unet_evals']} tile evals incl. CFG), best of {runs}:",
        f"  fused (ours): {', '.join(f'{t:.2f}s' for t in times['fused'])}",
        f"  naive:        {', '.join(f'{t:.2f}s' for t in times['naive'])}",
        f"  ratio naive/fused: {n / f:.2f}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="source side for the wall-time part")
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strength", type=float, default=0.35)
    args = ap.parse_args()
    for line in cost_table(args.steps, args.strength):
        print(line)
    print()
    for arch in ("sd15", "sdxl"):
        for line in wall(args.size, args.scale, args.runs, args.steps, args.strength, arch):
            print(line)


if __name__ == "__main__":
    main()
