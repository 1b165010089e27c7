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


def alpha_channel(rgba: bytes) -> bytes:
    """The A channel of RGBA/BGRA pixels as gray8."""
    return bytes(rgba[3::4])


def rgb_with_alpha(rgba: bytes, alpha: bytes) -> bytes:
    """Replace the alpha channel of RGBA/BGRA pixels with gray8 `alpha`."""
    if len(alpha) * 4 != len(rgba):
        raise ValueError("alpha size does not match the image")
    out = bytearray(rgba)
    out[3::4] = alpha
    return bytes(out)


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


def threshold(gray: bytes, level: int = 127) -> bytes:
    """Binary 0/255 mask from gray8."""
    return gray.translate(bytes(255 if v > level else 0 for v in range(256)))


def unpremultiply(rgba: bytes) -> bytes:
    """Premultiplied -> straight alpha (for hosts that hand out premultiplied buffers)."""
    out = bytearray(rgba)
    for i in range(0, len(out), 4):
        a = out[i + 3]
        if 0 < a < 255:
            out[i] = min(255, out[i] * 255 // a)
            out[i + 1] = min(255, out[i + 1] * 255 // a)
            out[i + 2] = min(255, out[i + 2] * 255 // a)
    return bytes(out)


def premultiply(rgba: bytes) -> bytes:
    """Straight -> premultiplied alpha."""
    out = bytearray(rgba)
    for i in range(0, len(out), 4):
        a = out[i + 3]
        if a < 255:
            out[i] = out[i] * a // 255
            out[i + 1] = out[i + 1] * a // 255
            out[i + 2] = out[i + 2] * a // 255
    return bytes(out)


def crop(data: bytes, w: int, bpp: int, x: int, y: int, cw: int, ch: int) -> bytes:
    """Cut a (x, y, cw, ch) box out of a row-major image `w` pixels wide with `bpp` bytes/pixel."""
    stride = w * bpp
    return b"".join(data[(y + r) * stride + x * bpp : (y + r) * stride + (x + cw) * bpp] for r in range(ch))


def nearest_resize(data: bytes, w: int, h: int, bpp: int, nw: int, nh: int) -> bytes:
    """Nearest-neighbour resize (thumbnails/previews only; quality resizing is the server's job)."""
    xs = [min(w - 1, x * w // nw) * bpp for x in range(nw)]
    out = bytearray()
    stride = w * bpp
    for y in range(nh):
        row = data[min(h - 1, y * h // nh) * stride : min(h - 1, y * h // nh) * stride + stride]
        if bpp == 1:
            out += bytes(row[x] for x in xs)
        else:
            for x in xs:
                out += row[x : x + bpp]
    return bytes(out)
