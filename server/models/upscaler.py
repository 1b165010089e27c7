"""Super-resolution upscaler models (ESRGAN / Real-ESRGAN family), run tiled; Lanczos fallback.

Why spandrel and not the ``realesrgan`` / ``gfpgan`` / ``basicsr`` packages: those packages
have been unmaintained since 2022 and no longer install cleanly on current Python and torch; pip
replaces a CPU or custom torch with a multi-gigabyte CUDA build, ``basicsr`` needs an import
patch for current torchvision, and they download weights at run time from CWD-relative folders.
spandrel is a small, maintained loader that reads the very same ``.pth``/``.safetensors`` files
(both the original ESRGAN and the Real-ESRGAN ``params_ema`` key layouts), identifies the
architecture from the weights alone, loads pickles with a restricted unpickler, and produces
bit-identical output to the reference implementation. We get the models users already have,
with one small dependency and no network access.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from tiling.geometry import Rect
from tiling.plan import plan_tiles
from tiling.weights import TileWeights

from ..errors import Cancelled
from ..imaging.tensors import to_pixels, to_tensor
from .files import find_files

MODEL_SUFFIXES = (".pth", ".safetensors")
# A1111 keeps upscalers in models/ESRGAN and models/RealESRGAN; ComfyUI in models/upscale_models.
UPSCALER_DIRS = ("ESRGAN", "RealESRGAN", "upscale_models")


class UpscalerError(ValueError):
    """The file is not a usable super-resolution model."""


class Upscalers(Protocol):
    """Where `upscale_with` gets a loaded upscaler by name (the `ModelManager`, which caches them)."""

    def upscaler(self, name: str) -> Any: ...


def load_upscaler(path: Path | str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load an SR model through spandrel; anything that is not a plain image SR model is refused.

    Returns a ``spandrel.ImageModelDescriptor`` (``.scale``, ``.device``, ``.dtype``, callable on
    [1, 3, H, W] float tensors in [0, 1]).
    """
    import spandrel  # deferred: only needed when an upscaler is actually used

    try:
        desc = spandrel.ModelLoader(device=device).load_from_file(str(path))
    except spandrel.UnsupportedModelError as exc:
        raise UpscalerError(f"{Path(path).name}: not a model spandrel recognises") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.purpose != "SR":
        arch = getattr(getattr(desc, "architecture", None), "name", type(desc).__name__)
        purpose = getattr(desc, "purpose", "?")
        raise UpscalerError(f"{Path(path).name}: {arch} ({purpose}) is not a super-resolution upscaler")
    if desc.input_channels != 3 or desc.output_channels != 3:
        raise UpscalerError(f"{Path(path).name}: expects {desc.input_channels} channels, need RGB")
    if dtype is not None:
        desc.to(dtype)
    return desc.eval()


def _to_tensor(img: np.ndarray, desc) -> torch.Tensor:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {img.dtype} {img.shape}")
    # Scaled in float32, then cast: bit-identical to scaling in the model dtype for all 256 values.
    return to_tensor(img, signed=False).to(device=desc.device, dtype=desc.dtype)


def upscale_tiled(desc, image: np.ndarray, *, tile: int = 256, overlap: int = 32) -> np.ndarray:
    """Upscale HxWx3 uint8 RGB by ``desc.scale``; tiles of ``tile`` input px so any size fits.

    Each tile runs with ``overlap`` px of extra context on every side (so its border artifacts
    fall outside the kept window), and neighbouring windows overlap by ``overlap`` px and are
    feather-blended with partition-of-unity weights: no seams, no hard edges. Runs on the
    descriptor's device and dtype; blending is in float32 on that device.
    """
    x = _to_tensor(image, desc)
    h, w = image.shape[:2]
    s = int(desc.scale)
    plan = plan_tiles(w, h, tile, min(overlap, tile - 1), multiple=1)
    weights = TileWeights.for_plan(plan.scaled(s))
    out = torch.zeros(1, 3, h * s, w * s, dtype=torch.float32, device=desc.device)
    multiple = max(1, int(desc.size_requirements.multiple_of))
    for i, r in enumerate(plan.tiles):
        ctx = _fit_multiple(r.padded(overlap).intersection(plan.canvas), multiple, w, h)
        with torch.inference_mode():
            y = desc(x[..., ctx.y : ctx.bottom, ctx.x : ctx.right]).float()
        keep = r.relative_to(ctx).scaled(s)
        dst = r.scaled(s)
        part = y[..., keep.y : keep.bottom, keep.x : keep.right]
        out[..., dst.y : dst.bottom, dst.x : dst.right] += part * weights.tile(i, torch.float32, desc.device)
    return to_pixels(out, signed=False)


def _fit_multiple(ctx: Rect, multiple: int, width: int, height: int) -> Rect:
    # Grow the context to the model's size multiple inside the image, so spandrel does not pad
    # inside the canvas (padding there would differ from an untiled run).
    def grow(start: int, size: int, length: int) -> tuple[int, int]:
        want = min(length, -(-size // multiple) * multiple)
        start = max(0, min(start, length - want))
        return start, want

    x, w = grow(ctx.x, ctx.w, width)
    y, h = grow(ctx.y, ctx.h, height)
    return Rect(x, y, w, h)


def lanczos(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PIL Lanczos to ``size`` (w, h): the upscale without a model, and the last step to an exact size."""
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def find_upscalers(models_root: Path) -> dict[str, Path]:
    """Upscaler files under ``models_root``'s ESRGAN/, RealESRGAN/ and upscale_models/ folders.

    Names are the paths relative to their folder without suffix (``"sub/4x-Foo"``); the first
    folder wins on a clash (walking rules: ``files.walk``)."""
    return find_files(models_root, UPSCALER_DIRS, MODEL_SUFFIXES)


def _conv(sd: dict[str, torch.Tensor], key: str, cin: int, cout: int, gen: torch.Generator) -> None:
    # He-style init scaled down so a random network stays in a sane output range.
    std = 0.5 * math.sqrt(2.0 / (cin * 9))
    sd[f"{key}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * std
    sd[f"{key}.bias"] = torch.zeros(cout)


def _rrdbnet_state(scale: int, feat: int, grow: int, blocks: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights in the Real-ESRGAN (basicsr ``RRDBNet``) key layout."""
    if scale not in (1, 2, 4):
        raise ValueError("RRDBNet supports scale 1, 2 or 4")
    sd: dict[str, torch.Tensor] = {}
    in_ch = 3 * {4: 1, 2: 4, 1: 16}[scale]  # x2/x1 models pixel-unshuffle their input first
    _conv(sd, "conv_first", in_ch, feat, gen)
    for b in range(blocks):
        for r in (1, 2, 3):
            for c in range(1, 6):
                cin = feat + (c - 1) * grow
                _conv(sd, f"body.{b}.rdb{r}.conv{c}", cin, grow if c < 5 else feat, gen)
    for key in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        _conv(sd, key, feat, feat, gen)
    _conv(sd, "conv_last", feat, 3, gen)
    # Mid-grey plus visible structure, so test outputs are neither clamped to black nor flat.
    sd["conv_last.weight"] *= 40
    sd["conv_last.bias"] += 0.5
    return sd


def _compact_state(scale: int, feat: int, convs: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights in the Real-ESRGAN ``SRVGGNetCompact`` layout (conv, PReLU, ..., conv)."""
    sd: dict[str, torch.Tensor] = {}
    _conv(sd, "body.0", 3, feat, gen)
    sd["body.1.weight"] = torch.full((feat,), 0.25)
    for i in range(convs):
        _conv(sd, f"body.{2 * i + 2}", feat, feat, gen)
        sd[f"body.{2 * i + 3}.weight"] = torch.full((feat,), 0.25)
    _conv(sd, f"body.{2 * convs + 2}", feat, 3 * scale * scale, gen)
    return sd


def write_test_upscaler(
    out_dir: Path, name: str = "4x-sdbridge-test", scale: int = 4, *, arch: str = "esrgan", seed: int = 0
) -> Path:
    """Write a tiny random-weight upscaler in a real Real-ESRGAN key layout; returns the file path.

    ``arch="esrgan"``: ``{"params_ema": RRDBNet}`` (num_feat 8, the standard grow 32, one block), detected by
    spandrel as ESRGAN. ``arch="compact"``: ``{"params": SRVGGNetCompact}`` (8 features, 2
    convs), detected as RealESRGAN Compact. Plain tensors, so ``torch.load(weights_only=True)`` works.
    """
    gen = torch.Generator().manual_seed(seed)
    if arch == "esrgan":
        payload = {"params_ema": _rrdbnet_state(scale, 8, 32, 1, gen)}  # spandrel assumes grow 32
    elif arch == "compact":
        payload = {"params": _compact_state(scale, 8, 2, gen)}
    else:
        raise ValueError(f"unknown test upscaler arch {arch!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pth"
    torch.save(payload, path)
    return path


def upscale_with(
    models: Upscalers,
    name: str | None,
    rgb: np.ndarray,
    size: tuple[int, int],
    cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """HxWx3 uint8 → `size` (w, h): the named upscaler from `welcome.upscalers` (repeated while the
    image is still smaller, e.g. a 2× model twice for 4×, then Lanczos to the exact size), or Lanczos
    alone when `name` is None. `cancelled()` is checked between model passes."""
    big = np.ascontiguousarray(rgb)
    if name is not None:
        desc = models.upscaler(name)
        while big.shape[1] < size[0] or big.shape[0] < size[1]:
            if cancelled():
                raise Cancelled
            big = upscale_tiled(desc, big)
    return big if (big.shape[1], big.shape[0]) == size else lanczos(big, size)
