"""Pixel-format conversion between editors and the wire, in pure Python (no numpy, no PIL).

Wire images are straight-alpha RGBA (`rgba8`) and gray masks (`gray8`). Krita's 8-bit RGBA paint
layers hand out BGRA bytes (little-endian ARGB32, straight alpha); GIMP gives RGBA. Channel swaps
use bytes slicing, which is C-speed even in an embedded interpreter.
"""

from __future__ import annotations


def swap_rb(data: bytes) -> bytes:
    """BGRA <-> RGBA (the operation is its own inverse)."""
    if len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a whole number of 4-byte pixels")
    out = bytearray(data)
    out[0::4] = data[2::4]
    out[2::4] = data[0::4]
    return bytes(out)


bgra_to_rgba = swap_rb
rgba_to_bgra = swap_rb


def opaque(rgba: bytes) -> bytes:
    """Force alpha to 255 (img2img init images must not carry holes)."""
    out = bytearray(rgba)
    out[3::4] = b"\xff" * (len(rgba) // 4)
    return bytes(out)


def gray_to_rgba(gray: bytes) -> bytes:
    """Gray8 -> opaque RGBA (for displaying masks)."""
    out = bytearray(len(gray) * 4)
    out[0::4] = gray
    out[1::4] = gray
    out[2::4] = gray
    out[3::4] = b"\xff" * len(gray)
    return bytes(out)


def crop(data: bytes, w: int, bpp: int, x: int, y: int, cw: int, ch: int) -> bytes:
    """Cut a (x, y, cw, ch) box out of a row-major image `w` pixels wide with `bpp` bytes/pixel."""
    stride = w * bpp
    return b"".join(data[(y + r) * stride + x * bpp : (y + r) * stride + (x + cw) * bpp] for r in range(ch))


def mask_alpha(rgba: bytes, mask: bytes) -> bytes:
    """RGBA whose alpha is multiplied by a gray8 mask of the same size (a soft selection cut)."""
    if len(rgba) != len(mask) * 4:
        raise ValueError(f"{len(rgba)} RGBA bytes do not match a {len(mask)}-pixel mask")
    out = bytearray(rgba)
    out[3::4] = bytes(a * m // 255 for a, m in zip(rgba[3::4], mask, strict=True))
    return bytes(out)
