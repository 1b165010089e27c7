"""Options more than one sub-command takes, each declared once."""

from __future__ import annotations

import argparse
import os
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
    return params


def set_params(params: dict[str, Any], args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """`params` plus each named option the user gave (None = leave it to the server's default)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return params
