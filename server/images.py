"""Image decoding/encoding at the protocol boundary, with the pixel limits enforced up front."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, PngImagePlugin

from .protocol import ImageRef, ProtocolError

# What PIL calls the formats a client may declare (an MPO is a JPEG with extra frames, as cameras write).
_SNIFFED = {"PNG": "png", "WEBP": "webp", "JPEG": "jpeg", "MPO": "jpeg"}
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit grey: scaled, not clipped, to 8 bits


def decode(ref: ImageRef, max_pixels: int, name: str, job_id: str | None = None) -> np.ndarray:
    """→ HxWx4 uint8 RGBA (or HxW uint8 for `gray8`). Size is checked before any decompression."""
    if ref.format in ("rgba8", "gray8"):
        assert ref.w is not None and ref.h is not None  # parse_image guarantees both
        _check_pixels(ref.w, ref.h, max_pixels, name, job_id)
        arr = np.frombuffer(ref.data, np.uint8)
        return arr.reshape(ref.h, ref.w, 4).copy() if ref.format == "rgba8" else arr.reshape(ref.h, ref.w).copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(ref.data))
            _check_pixels(img.width, img.height, max_pixels, name, job_id)  # header only; nothing decoded yet
            found = _SNIFFED.get(img.format or "")
            if found != ref.format:
                actual = img.format or "unknown"
                raise ProtocolError("bad_image", f"images.{name}: declared {ref.format}, the data is {actual}", job_id)
            img.load()
    except ProtocolError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL refuses before we see the size; its message quotes its own limit, so say ours.
        size = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(size.group(1))} pixels" if size else "the image"
        raise ProtocolError(
            "image_too_large", f"images.{name}: {what} exceeds the limit of {max_pixels} pixels", job_id
        ) from None
    except Exception as exc:  # PIL raises many types on corrupt data
        raise ProtocolError("bad_image", f"images.{name}: cannot decode {ref.format}: {exc}", job_id) from None
    return to_rgba(img)


def to_rgba(img: Image.Image) -> np.ndarray:
    """Any decoded mode as 8-bit RGBA: 16-bit grey is scaled (v / 257), palette transparency and
    CMYK are converted by PIL."""
    if img.mode in _WIDE_MODES:
        grey = np.clip(np.rint(np.asarray(img, np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    return np.asarray(img.convert("RGBA"))


def _check_pixels(w: int, h: int, max_pixels: int, name: str, job_id: str | None) -> None:
    if w * h > max_pixels:
        raise ProtocolError(
            "image_too_large", f"images.{name}: {w}x{h} exceeds the limit of {max_pixels} pixels", job_id
        )


def to_gray(img: np.ndarray) -> np.ndarray:
    """A mask from any decoded image: gray stays, RGBA uses alpha if not opaque, else luminance."""
    if img.ndim == 2:
        return img
    if (img[..., 3] < 255).any():
        return img[..., 3].copy()
    return np.asarray(Image.fromarray(img[..., :3]).convert("L"))


def encode_png(img: np.ndarray, parameters: str | None = None, compress_level: int = 1) -> bytes:
    """PNG bytes; `parameters` becomes A1111's `parameters` tEXt chunk. Level 1: speed over size."""
    info = None
    if parameters is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def encode_webp(img: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="WEBP", quality=quality)
    return buf.getvalue()


def rgba8_bytes(img: np.ndarray) -> bytes:
    """Raw `rgba8` wire bytes of an RGB or RGBA image (RGB gets opaque alpha)."""
    h, w = img.shape[:2]
    rgba = img if img.shape[2] == 4 else np.dstack([img, np.full((h, w), 255, np.uint8)])
    return np.ascontiguousarray(rgba).tobytes()


# Step-preview formats the server can encode, for `hello.preview_formats` (the client's order wins).
PREVIEW_FORMATS = ("webp", "png", "jpeg", "rgba8")
DEFAULT_PREVIEW_FORMATS = ("webp",)  # clients that don't say (the protocol's default)


def preview_thumbnail(img: np.ndarray, max_side: int = 256) -> np.ndarray:
    """The preview at most `max_side` px on its longer side (small previews are left as they are)."""
    pil = Image.fromarray(img)
    pil.thumbnail((max_side, max_side))
    return np.asarray(pil)


def encode_preview(pixels: np.ndarray, formats: Sequence[str]) -> tuple[str, bytes]:
    """Encode a (thumbnailed) preview in the first of `formats` this server supports (webp if none)."""
    fmt = next((f for f in formats if f in PREVIEW_FORMATS), DEFAULT_PREVIEW_FORMATS[0])
    if fmt == "rgba8":
        return fmt, rgba8_bytes(pixels)
    pil = Image.fromarray(pixels)
    if fmt == "jpeg" and pil.mode != "RGB":
        pil = pil.convert("RGB")
    buf = io.BytesIO()
    options = {"png": {"compress_level": 1}, "jpeg": {"quality": 80}, "webp": {"quality": 70}}[fmt]
    pil.save(buf, format=fmt.upper(), **options)
    return fmt, buf.getvalue()


def a1111_parameters(p: dict) -> str:
    """The text A1111 writes into PNGs, so PNG-info tools read ours."""
    lines = [p.get("prompt", "")]
    if p.get("negative"):
        lines.append(f"Negative prompt: {p['negative']}")
    fields = [
        ("Steps", p.get("steps")),
        ("Sampler", p.get("sampler")),
        ("CFG scale", p.get("cfg")),
        ("Seed", p.get("seed")),
        ("Size", f"{p.get('width')}x{p.get('height')}" if p.get("width") else None),
        ("Model", p.get("model")),
        ("Denoising strength", p.get("strength")),
    ]
    lines.append(", ".join(f"{k}: {v}" for k, v in fields if v is not None))
    return "\n".join(lines)
