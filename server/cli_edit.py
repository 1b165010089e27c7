"""Editing sub-commands: `inpaint`, `outpaint`, `face`, `restore`.

Each sends the image (and mask) as files are, runs the job with a progress bar, and writes the
returned rectangles composited onto the image to `--out` (`--layers DIR`: each rectangle too).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .cli_client import add_connection_args, add_gen_args, gen_params, read_image, run_job


def _rgba(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGBA"))


def _edit_args(p: argparse.ArgumentParser) -> None:
    add_gen_args(p, prompt_required=False)
    p.add_argument("--strength", type=float, help="denoising strength (default: the job's)")
    p.add_argument("--no-color-match", dest="color_match", action="store_false", help="keep the model's colours")


def _edit_params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    params = gen_params(args) | {"color_match": args.color_match}
    for name in ("strength", *names):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return params


def cmd_inpaint(args: argparse.Namespace) -> int:
    params = _edit_params(args, "target", "grow", "feather", "fill")
    imgs = {"image": read_image(args.image), "mask": read_image(args.mask)}
    return run_job(args, "inpaint", params, imgs, _rgba(args.image))


def cmd_outpaint(args: argparse.Namespace) -> int:
    params = _edit_params(args, "margin", "prefill")
    params |= {k: getattr(args, k) for k in ("left", "right", "top", "bottom") if getattr(args, k)}
    imgs = {"image": read_image(args.image)}
    if args.mask:
        imgs["mask"] = read_image(args.mask)
    base = _rgba(args.image)
    # The result's rects are in the new canvas; put the old image where the server placed it.
    h, w = base.shape[:2]
    grown = np.zeros((h + args.top + args.bottom, w + args.left + args.right, 4), np.uint8)
    grown[args.top : args.top + h, args.left : args.left + w] = base
    return run_job(args, "outpaint", params, imgs, grown)


def cmd_face(args: argparse.Namespace) -> int:
    params = _edit_params(args, "target", "padding")
    imgs = {"image": read_image(args.image)}
    if args.mask:
        imgs["mask"] = read_image(args.mask)
    return run_job(args, "face", params, imgs, _rgba(args.image))


def cmd_restore(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"fidelity": args.fidelity, "blend": args.blend}
    if args.model:
        params["model"] = args.model
    imgs = {"image": read_image(args.image)}
    if args.mask:
        imgs["mask"] = read_image(args.mask)
    return run_job(args, "restore", params, imgs, _rgba(args.image))


def register(sub: Any, add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add(sub, "inpaint", "regenerate the masked area of an image (mask: white = selected, soft edges ok)")
    p.add_argument("image", type=Path)
    p.add_argument("mask", type=Path)
    _edit_args(p)
    p.add_argument("--target", type=int, help="detail resolution in px (default: the model's native)")
    p.add_argument("--grow", type=int, help="px the selection grows before feathering (default 8)")
    p.add_argument("--feather", type=int, help="soft edge width in px (default 8)")
    p.add_argument("--fill", choices=("original", "blur", "telea", "ns"), help="init under the mask")
    p.set_defaults(func=cmd_inpaint)

    p = add(sub, "outpaint", "extend an image on its sides (or fill a mask at its edge / transparent area)")
    p.add_argument("image", type=Path)
    _edit_args(p)
    for side in ("left", "right", "top", "bottom"):
        p.add_argument(f"--{side}", type=int, default=0, metavar="PX")
    p.add_argument("--mask", type=Path, help="selection touching an edge or covering transparent pixels")
    p.add_argument("--margin", type=int, help="blend margin into the old image in px (default 16)")
    p.add_argument("--prefill", choices=("telea", "ns"), help="OpenCV inpaint method for the pre-fill")
    p.set_defaults(func=cmd_outpaint)

    p = add(sub, "face", "re-render faces at the model's native resolution")
    p.add_argument("image", type=Path)
    _edit_args(p)
    p.add_argument("--mask", type=Path, help="selected face areas (default: detect faces)")
    p.add_argument("--target", type=int, help="face resolution in px (default: the model's native)")
    p.add_argument("--padding", type=float, help="context around each face, x its size (default 0.5)")
    p.set_defaults(func=cmd_face)

    p = add(sub, "restore", "restore faces with a GFPGAN/CodeFormer model")
    p.add_argument("image", type=Path)
    p.add_argument("--out", required=True, type=Path, help="PNG file to write")
    p.add_argument("--model", help="restorer name (default: the server's first)")
    p.add_argument("--fidelity", type=float, default=0.5, help="CodeFormer w: 0 strongest, 1 closest to input")
    p.add_argument("--blend", type=float, default=1.0, help="mix of restored and original face (0-1)")
    p.add_argument("--mask", type=Path, help="selected face areas (default: detect faces)")
    p.add_argument("--layers", type=Path, help="also write each returned rectangle as its own PNG here")
    add_connection_args(p)
    p.set_defaults(func=cmd_restore)
