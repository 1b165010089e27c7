"""Helpers for the editing-job tests: real photos, wire images, compositing returned rects."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

from server.imaging.compose import Patch, composite
from tests.conftest import connect, run
from tiling.geometry import Rect

ASTRONAUT_FACE = Rect.from_bounds(175, 65, 270, 180)  # the face in scikit-image's astronaut photo (512x512)


def photo(name: str, w: int, h: int) -> np.ndarray:
    """A scikit-image sample photo resized to w x h, as opaque RGBA."""
    rgb = np.asarray(Image.fromarray(getattr(data, name)()).convert("RGB").resize((w, h), Image.Resampling.LANCZOS))
    return np.dstack([rgb, np.full((h, w), 255, np.uint8)])


def rgba8(img: np.ndarray) -> dict[str, Any]:
    return {"format": "rgba8", "data": np.ascontiguousarray(img).tobytes(), "w": img.shape[1], "h": img.shape[0]}


def gray8(mask: np.ndarray) -> dict[str, Any]:
    return {"format": "gray8", "data": np.ascontiguousarray(mask).tobytes(), "w": mask.shape[1], "h": mask.shape[0]}


def png(img: np.ndarray) -> dict[str, Any]:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return {"format": "png", "data": buf.getvalue()}


def pixels(rect: dict) -> np.ndarray:
    if rect["format"] == "rgba8":
        return np.frombuffer(rect["data"], np.uint8).reshape(rect["h"], rect["w"], 4)
    return np.asarray(Image.open(io.BytesIO(rect["data"])).convert("RGBA"))


def job(url: str, kind: str, params: dict, images: dict) -> dict:
    async def go() -> dict:
        async with await connect(url) as c:
            return await c.run(kind, params, images)

    return run(go())


def apply(base: np.ndarray, result: dict, origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Composite the result's rects onto `base` (placed at `origin` of `result.canvas` when given).

    Returns (composited RGBA, bool mask of pixels some rect gives alpha > 0).
    """
    canvas = result.get("canvas")
    h, w = (canvas["h"], canvas["w"]) if canvas else base.shape[:2]
    out = np.zeros((h, w, 4), np.uint8)
    out[origin[1] : origin[1] + base.shape[0], origin[0] : origin[0] + base.shape[1]] = base
    touched = np.zeros((h, w), bool)
    for r in result["images"]:
        px = pixels(r)
        assert px.shape[:2] == (r["h"], r["w"])
        rect = Rect(r["x"], r["y"], r["w"], r["h"])
        assert rect.clamped(w, h) == rect, f"rect {rect} leaves the {w}x{h} canvas"
        out = composite(out, Patch(rect, px))
        touched[rect.slices] |= px[..., 3] > 0
    return out, touched
