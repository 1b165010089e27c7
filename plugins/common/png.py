"""Minimal PNG encode/decode with zlib only: hosts without PIL (Krita's Python) can still read results.

Decoding supports 8-bit gray, gray+alpha, RGB, RGBA and palette images, non-interlaced: what
PIL/OpenCV write for results. Output is always straight RGBA. Hosts with a native decoder (Qt's
QImage, GEGL) should prefer it for big images; this is the portable fallback.
"""

from __future__ import annotations

import struct
import zlib

_SIG = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class PNGError(ValueError):
    pass


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode(data: bytes, w: int, h: int, channels: int = 4, level: int = 1) -> bytes:
    """Encode RGBA (channels=4), RGB (3) or gray (1) bytes; filter 0 + fast zlib (speed over size)."""
    color = {1: 0, 3: 2, 4: 6}[channels]
    stride = w * channels
    if len(data) != stride * h:
        raise PNGError(f"{len(data)} bytes do not make a {w}x{h}x{channels} image")
    raw = b"".join(b"\x00" + data[y * stride : (y + 1) * stride] for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return _SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def size(png: bytes) -> tuple[int, int]:
    if png[:8] != _SIG or png[12:16] != b"IHDR":
        raise PNGError("not a PNG")
    w, h = struct.unpack(">II", png[16:24])
    return w, h


def _unfilter(raw: bytes, w: int, h: int, bpp: int) -> bytearray:
    stride = w * bpp
    out = bytearray(stride * h)
    prev = bytearray(stride)
    pos = 0
    for y in range(h):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif ftype == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise PNGError(f"bad filter type {ftype}")
        out[y * stride : (y + 1) * stride] = line
        prev = line
    return out


def decode(png: bytes, max_pixels: int = 1 << 26) -> tuple[int, int, bytes]:
    """-> (w, h, straight RGBA bytes). Size is checked before inflating (no decompression bombs)."""
    w, h = size(png)
    if w * h > max_pixels:
        raise PNGError(f"{w}x{h} exceeds {max_pixels} pixels")
    pos, idat, palette, trns = 8, [], b"", b""
    depth = color = interlace = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            _, _, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"tRNS":
            trns = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if depth != 8 or interlace or color not in _CHANNELS:
        raise PNGError(f"unsupported PNG (bit depth {depth}, color type {color}, interlace {interlace})")
    ch = _CHANNELS[color]
    d = zlib.decompressobj()
    raw = d.decompress(b"".join(idat), (w * ch + 1) * h + 1)
    if len(raw) < (w * ch + 1) * h:
        raise PNGError("truncated image data")
    px = bytes(_unfilter(raw, w, h, ch))
    n = w * h
    out = bytearray(n * 4)
    if color == 6:
        return w, h, px
    if color == 2:
        out[0::4], out[1::4], out[2::4] = px[0::3], px[1::3], px[2::3]
        out[3::4] = b"\xff" * n
    elif color == 0:
        out[0::4] = out[1::4] = out[2::4] = px
        out[3::4] = b"\xff" * n
    elif color == 4:
        out[0::4] = out[1::4] = out[2::4] = px[0::2]
        out[3::4] = px[1::2]
    else:  # palette
        alpha = trns + b"\xff" * (256 - len(trns))
        rgb_table = [palette[i * 3 : i * 3 + 3] for i in range(len(palette) // 3)]
        out[0::4] = bytes(rgb_table[i][0] for i in px)
        out[1::4] = bytes(rgb_table[i][1] for i in px)
        out[2::4] = bytes(rgb_table[i][2] for i in px)
        out[3::4] = bytes(alpha[i] for i in px)
    return w, h, bytes(out)
