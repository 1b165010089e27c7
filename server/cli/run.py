"""Running one job from the command line: send params + images, show a progress bar, then composite
the returned rectangles onto the canvas and write it as a PNG with A1111 `parameters` text."""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from websockets import ConnectionClosed

from tiling.geometry import Rect

from .. import images
from ..client import Client, ServerError
from ..imaging import compose


def read_image(path: Path) -> dict[str, Any]:
    """A file as a protocol image: PNG/WebP/JPEG bytes are sent as they are (the server decodes)."""
    data = path.read_bytes()
    fmt = (Image.open(io.BytesIO(data)).format or "").lower()
    if fmt not in ("png", "webp", "jpeg"):
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).save(buf, format="PNG")
        data, fmt = buf.getvalue(), "png"
    return {"format": fmt, "data": data}


def control_images(args: argparse.Namespace) -> dict[str, Any]:
    """The images the controls name (`options.control_list` calls them `controlN`), read from their files."""
    return {f"control{i}": read_image(spec["image"]) for i, spec in enumerate(getattr(args, "control", []))}


def input_images(args: argparse.Namespace) -> dict[str, Any]:
    """The command's `image`, its `mask` when one was given and its control images, as protocol images."""
    imgs = {"image": read_image(args.image), **control_images(args)}
    if getattr(args, "mask", None):
        imgs["mask"] = read_image(args.mask)
    return imgs


def decode_rect(rect: dict[str, Any]) -> np.ndarray:
    ref = images.ImageRef(rect["format"], rect["data"], rect.get("w"), rect.get("h"))
    return images.decode(ref, 1 << 31, "result")


def composite(base: np.ndarray | None, result: dict[str, Any]) -> list[np.ndarray]:
    """Without a base (generate): one canvas per returned image. With one: every rect pasted
    alpha-over onto the base (grown first when the job changed the canvas size)."""
    if base is None:
        return [decode_rect(r) for r in result["images"]]
    # Integer source-over (as an editor layer would): alpha 0 keeps the base bit-identical.
    out = _grow(base, result.get("canvas"))
    for r in result["images"]:
        out = compose.composite(out, compose.Patch(Rect(r["x"], r["y"], r["w"], r["h"]), decode_rect(r)))
    return [out]


def _grow(base: np.ndarray, canvas: dict[str, int] | None) -> np.ndarray:
    """The base canvas, padded (transparent) to a new canvas size; offsets are the server's to give."""
    if not canvas or (canvas["w"], canvas["h"]) == (base.shape[1], base.shape[0]):
        return base
    out = np.zeros((canvas["h"], canvas["w"], 4), np.uint8)
    h, w = min(base.shape[0], canvas["h"]), min(base.shape[1], canvas["w"])
    out[:h, :w] = base[:h, :w]
    return out


class ProgressBar:
    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr  # looked up now: tests and callers may swap sys.stderr

    def __call__(self, ev: dict[str, Any]) -> None:
        if ev["type"] == "queued":
            self.stream.write(f"\rqueued (position {ev['position']})          ")
        elif ev["type"] == "progress":
            done = int(30 * ev["step"] / max(ev["total"], 1))
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] {ev['step']}/{ev['total']}")
        elif ev["type"] in ("result", "error", "cancelled"):
            self.stream.write("\n")
        self.stream.flush()


def write_outputs(args: argparse.Namespace, result: dict[str, Any], canvases: list[np.ndarray]) -> list[Path]:
    params = result.get("params", {})
    written = []
    for i, canvas in enumerate(canvases):
        path = args.out if len(canvases) == 1 else args.out.with_name(f"{args.out.stem}-{i + 1}{args.out.suffix}")
        seed = result["images"][i].get("seed", params.get("seed")) if len(canvases) > 1 else params.get("seed")
        text = images.a1111_parameters({**params, "seed": seed, "width": canvas.shape[1], "height": canvas.shape[0]})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(images.encode_png(canvas, parameters=text, compress_level=6))
        written.append(path)
    if getattr(args, "layers", None):
        args.layers.mkdir(parents=True, exist_ok=True)
        for i, r in enumerate(result["images"]):
            layer = args.layers / f"{i:02d}_x{r['x']}_y{r['y']}.png"
            layer.write_bytes(images.encode_png(decode_rect(r), compress_level=6))
            written.append(layer)
    return written


def run_job(
    args: argparse.Namespace, kind: str, params: dict[str, Any], imgs: dict[str, Any], base: np.ndarray | None
) -> int:
    """Run one job against the server and write its outputs; returns the process exit code."""

    async def go() -> dict[str, Any]:
        async with await Client.connect(args.url, args.token) as client:
            return await client.run(kind, params, imgs, on_event=ProgressBar())

    try:
        result = asyncio.run(go())
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ConnectionClosed) as exc:
        print(f"error: cannot reach the server at {args.url}: {exc}", file=sys.stderr)
        return 3
    for msg in result.get("params", {}).get("messages", []):
        print(msg, file=sys.stderr)
    for path in write_outputs(args, result, composite(base, result)):
        print(path)
    return 0
