"""`sdbridge` command line: serve, make-test-model, and the client sub-commands.

One module per command group, each with `register(subparsers)`: `serve` (serve, make-test-model),
`generate` (generate, models), `edit` (inpaint, outpaint, face, restore), `upscale`. Options more
than one command takes are declared once in `options`; running a job and writing its PNGs is `run`.
"""

from __future__ import annotations

import argparse

from . import edit, generate, serve, upscale

GROUPS = (serve, generate, edit, upscale)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdbridge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
