"""Editing sub-commands: `inpaint`, `outpaint`, `face`, `restore`.

Each sends the image (and mask) as files are, runs the job with a progress bar, and writes the
returned rectangles composited onto the image to `--out` (`--layers DIR`: each rectangle too).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .options import add_command, add_gen_args, add_image_args, add_output_args, gen_params, set_params
from .run import input_images, run_job


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"))


def _edit_args(p: argparse.ArgumentParser) -> None:
    add_gen_args(p, prompt_required=False)
    p.add_argument("--strength", type=float, help="denoising strength (default: the job's)")
    p.add_argument("--no-color-match", dest="color_match", action="store_false", help="keep the model's colours")


def _edit_params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return set_params(gen_params(args) | {"color_match": args.color_match}, args, ("strength", *names))


def cmd_inpaint(args: argparse.Namespace) -> int:
    params = _edit_params(args, "target", "grow", "feather", "fill")
    return run_job(args, "inpaint", params, input_images(args), _rgba(args.image))


def cmd_outpaint(args: argparse.Namespace) -> int:
    params = _edit_params(args, "margin", "prefill")
    params |= {k: getattr(args, k) for k in ("left", "right", "top", "bottom") if getattr(args, k)}
    base = _rgba(args.image)
    # The result's rects are in the new canvas; put the old image where the server placed it.
    h, w = base.shape[:2]
    grown = np.zeros((h + args.top + args.bottom, w + args.left + args.right, 4), np.uint8)
    grown[args.top : args.top + h, args.left : args.left + w] = base
    return run_job(args, "outpaint", params, input_images(args), grown)


def cmd_face(args: argparse.Namespace) -> int:
    params = _edit_params(args, "target", "padding")
    return run_job(args, "face", params, input_images(args), _rgba(args.image))


def cmd_restore(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"fidelity": args.fidelity, "blend": args.blend}
    if args.model:
        params["model"] = args.model
    return run_job(args, "restore", params, input_images(args), _rgba(args.image))


def register(sub: Any) -> None:
    p = add_command(sub, "inpaint", "regenerate the masked area of an image (mask: white = selected, soft edges ok)")
    add_image_args(p)
    p.add_argument("mask", type=Path)
    _edit_args(p)
    p.add_argument("--target", type=int, help="detail resolution in px (default: the model's native)")
    p.add_argument("--grow", type=int, help="px the selection grows before feathering (default 8)")
    p.add_argument("--feather", type=int, help="soft edge width in px (default 8)")
    p.add_argument("--fill", choices=("original", "blur", "telea", "ns"), help="init under the mask")
    p.set_defaults(func=cmd_inpaint)

    p = add_command(sub, "outpaint", "extend an image on its sides (or fill a mask at its edge / transparent area)")
    add_image_args(p, "selection touching an edge or covering transparent pixels")
    _edit_args(p)
    for side in ("left", "right", "top", "bottom"):
        p.add_argument(f"--{side}", type=int, default=0, metavar="PX")
    p.add_argument("--margin", type=int, help="blend margin into the old image in px (default 16)")
    p.add_argument("--prefill", choices=("telea", "ns"), help="OpenCV inpaint method for the pre-fill")
    p.set_defaults(func=cmd_outpaint)

    p = add_command(sub, "face", "re-render faces at the model's native resolution")
    add_image_args(p, "selected face areas (default: detect faces)")
    _edit_args(p)
    p.add_argument("--target", type=int, help="face resolution in px (default: the model's native)")
    p.add_argument("--padding", type=float, help="context around each face, x its size (default 0.5)")
    p.set_defaults(func=cmd_face)

    p = add_command(sub, "restore", "restore faces with a GFPGAN/CodeFormer model")
    add_image_args(p, "selected face areas (default: detect faces)")
    p.add_argument("--model", help="restorer name (default: the server's first)")
    p.add_argument("--fidelity", type=float, default=0.5, help="CodeFormer w: 0 strongest, 1 closest to input")
    p.add_argument("--blend", type=float, default=1.0, help="mix of restored and original face (0-1)")
    add_output_args(p)
    p.set_defaults(func=cmd_restore)
