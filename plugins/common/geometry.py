"""Canvas geometry for editor adapters: selection bounds and outpaint helpers over the one `Rect`.

Pure Python on purpose (no numpy): it runs inside Krita's and GIMP's embedded interpreters.
`Rect` is the server's and tiling's own (`tiling/geometry.py`, the one definition): a built plugin
carries a copy of that file as `_geometry.py`, the way it carries `server/protocol.py`.
"""

from __future__ import annotations

from typing import Literal

try:
    from ._geometry import Rect, floor_to  # vendored copy inside a built plugin
except ImportError:  # running from the repository checkout
    from tiling.geometry import Rect, floor_to  # type: ignore[no-redef]

__all__ = ["SIDES", "Rect", "Side", "extend_amounts", "fit_size", "mask_bounds", "touching_sides"]

Side = Literal["left", "right", "top", "bottom"]
SIDES: tuple[Side, ...] = ("left", "right", "top", "bottom")


def mask_bounds(mask: bytes, w: int, h: int, threshold: int = 0) -> Rect:
    """Bounding box of mask bytes (gray8, row-major) above `threshold`; empty Rect when none."""
    if len(mask) != w * h:
        raise ValueError(f"mask of {len(mask)} bytes does not match {w}x{h}")
    # Per-row scans with bytes methods keep this fast enough in pure Python for 4k masks.
    table = bytes(255 if v > threshold else 0 for v in range(256))
    binary = mask.translate(table)
    rows = [y for y in range(h) if binary.find(b"\xff", y * w, (y + 1) * w) >= 0]
    if not rows:
        return Rect(0, 0, 0, 0)
    x0, x1 = w, 0
    for y in rows:
        row = binary[y * w : (y + 1) * w]
        x0 = min(x0, row.find(b"\xff"))
        x1 = max(x1, row.rfind(b"\xff") + 1)
    return Rect.from_bounds(x0, rows[0], x1, rows[-1] + 1)


def touching_sides(sel: Rect, canvas_w: int, canvas_h: int, tolerance: int = 2) -> list[Side]:
    """Canvas edges a selection touches (within `tolerance` px): outpaint candidates."""
    sides: list[Side] = []
    if sel.x <= tolerance:
        sides.append("left")
    if sel.right >= canvas_w - tolerance:
        sides.append("right")
    if sel.y <= tolerance:
        sides.append("top")
    if sel.bottom >= canvas_h - tolerance:
        sides.append("bottom")
    return sides


def extend_amounts(side: Side, pixels: int) -> dict[str, int]:
    """Per-side extension map for an outpaint job extending `side` by `pixels`."""
    return {s: (pixels if s == side else 0) for s in SIDES}


def fit_size(w: int, h: int, max_pixels: int, multiple: int = 8) -> tuple[int, int]:
    """Scale (w, h) down to at most `max_pixels`, keeping aspect and snapping to `multiple`."""
    if w * h > max_pixels:
        f = (max_pixels / (w * h)) ** 0.5
        w, h = int(w * f), int(h * f)
    return max(multiple, floor_to(w, multiple)), max(multiple, floor_to(h, multiple))
