"""Options more than one sub-command takes, each declared once."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import DEFAULT_URL


def add_command(sub: Any, name: str, help_: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_)


def add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("SDBRIDGE_URL", DEFAULT_URL), help="server websocket URL")
    p.add_argument("--token", default=os.environ.get("SDBRIDGE_TOKEN"), help="token (or $SDBRIDGE_TOKEN)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """Where a job's result goes, plus the connection to the server that runs it."""
    p.add_argument("--out", required=True, type=Path, help="PNG file to write")
    p.add_argument("--layers", type=Path, help="also write each returned rectangle as its own PNG here")
    add_connection_args(p)


def add_image_args(p: argparse.ArgumentParser, mask_help: str | None = None) -> None:
    """The input image, and an optional `--mask` selection (white = selected, soft edges ok)."""
    p.add_argument("image", type=Path)
    if mask_help is not None:
        p.add_argument("--mask", type=Path, help=mask_help)


def control_spec(text: str) -> dict[str, Any]:
    """`MODEL:IMAGE[:strength[:start:end]]` → a control (image as a path; the name is given when sent).

    The model name is up to the first `:`; numbers at the end (one, or three) are the strength and the
    start/end fractions, so the image path may itself contain `:`."""
    model, _, rest = text.partition(":")
    parts = rest.split(":")
    numbers: list[float] = []
    for n in (3, 1):
        if len(parts) > n:
            try:
                numbers = [float(v) for v in parts[-n:]]
            except ValueError:
                continue
            parts = parts[:-n]
            break
    image = ":".join(parts)
    if not model or not image:
        raise argparse.ArgumentTypeError("expected MODEL:IMAGE[:strength[:start:end]]")
    spec: dict[str, Any] = {"model": model, "image": Path(image)}
    spec |= dict(zip(("strength", "start", "end"), numbers, strict=False))
    return spec


def add_control_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("control layers (ControlNet / IP-Adapter)")
    g.add_argument(
        "--control",
        action="append",
        type=control_spec,
        default=[],
        metavar="MODEL:IMAGE[:S[:START:END]]",
        help="a control from the server's controls list, its image, strength (default 1) and the part of "
        "the run it acts on (fractions, default 0:1); repeat for several",
    )
    g.add_argument(
        "--control-preprocess",
        action="append",
        default=[],
        metavar="TYPE",
        help="none | auto | canny | lineart | scribble | softedge | tile | blur | inpaint: the n-th applies to "
        "the n-th --control, a single one to all (default none: the image is the control map)",
    )


def control_list(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The `controls` param; control n names its image `controlN` (see `run.control_images`)."""
    pre = args.control_preprocess
    if len(pre) > 1 and len(pre) != len(args.control):
        raise SystemExit(f"error: {len(pre)} --control-preprocess for {len(args.control)} --control")
    controls = []
    for i, spec in enumerate(args.control):
        c = {k: v for k, v in spec.items() if k != "image"} | {"image": f"control{i}"}
        if pre:
            c["preprocess"] = pre[i] if len(pre) > 1 else pre[0]
        controls.append(c)
    return controls


def add_gen_args(p: argparse.ArgumentParser, prompt_required: bool = True) -> None:
    """The usual generation options, shared by every diffusion sub-command."""
    if prompt_required:
        p.add_argument("prompt")
    else:
        p.add_argument("--prompt", default="")
    p.add_argument("--model")
    p.add_argument("--negative", default="")
    p.add_argument("--seed", type=int, default=-1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=7.0)
    p.add_argument("--sampler", default="Euler a")
    p.add_argument("--schedule", default="Automatic", help="schedule type: Automatic, Karras, SGM Uniform, …")
    add_control_args(p)
    add_output_args(p)


def gen_params(args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "prompt": args.prompt,
        "negative": args.negative,
        "seed": args.seed,
        "steps": args.steps,
        "cfg": args.cfg,
        "sampler": args.sampler,
        "schedule": args.schedule,
    }
    if args.model:
        params["model"] = args.model
    controls = control_list(args)
    if controls:
        params["controls"] = controls
    return params


def set_params(params: dict[str, Any], args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """`params` plus each named option the user gave (None = leave it to the server's default)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return params


@dataclass(frozen=True)
class PromptRegion:
    """`--region PROMPT:MASK.png`: PROMPT for the white part of MASK (soft edges ok)."""

    prompt: str
    mask: Path


_RECT = re.compile(r"^-?\d+,-?\d+,\d+,\d+$")


def region_arg(text: str) -> PromptRegion | dict[str, int]:
    """`PROMPT:MASK.png` (the last `:` splits), or `X,Y,W,H` (a source rectangle: `upscale` only)."""
    if _RECT.match(text.strip()):
        x, y, w, h = (int(v) for v in text.split(","))
        return {"x": x, "y": y, "w": w, "h": h}
    prompt, sep, mask = text.rpartition(":")
    if not sep or not prompt.strip() or not mask:
        raise argparse.ArgumentTypeError(f"expected PROMPT:MASK.png, got {text!r}")
    if not Path(mask).is_file():
        raise argparse.ArgumentTypeError(f"region mask {mask!r}: no such file")
    return PromptRegion(prompt, Path(mask))


def add_region_args(p: argparse.ArgumentParser, rect: bool = False) -> None:
    """`--region PROMPT:MASK.png`, repeatable: a prompt per area; the main prompt covers the rest."""
    what = "PROMPT:MASK.png" + (" | X,Y,W,H" if rect else "")
    why = "a prompt for the white area of MASK.png (repeatable; the main prompt is the background)"
    if rect:
        why += "; X,Y,W,H (source px): regenerate only this rectangle"
    p.add_argument("--region", action="append", type=region_arg, default=[], metavar=what, help=why)


def region_params(
    args: argparse.Namespace, params: dict[str, Any], images: dict[str, Any], read: Any
) -> dict[str, Any] | None:
    """Put the `--region` prompts into `params`/`images` (masks read with `read`); returns the
    rectangle given as X,Y,W,H, if any (one at most)."""
    rects = [r for r in args.region if isinstance(r, dict)]
    if len(rects) > 1:
        raise SystemExit("error: give at most one --region X,Y,W,H rectangle")
    prompts = [r for r in args.region if isinstance(r, PromptRegion)]
    if prompts:
        params["regions"] = []
        for i, r in enumerate(prompts):
            images[f"region-{i + 1}"] = read(r.mask)
            params["regions"].append({"prompt": r.prompt, "mask": f"region-{i + 1}"})
    return rects[0] if rects else None
