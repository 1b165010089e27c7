"""uint8 pixels <-> float tensors: the one conversion rule for the VAE, upscalers and restorers.

Pixels are HxWxC uint8 (C = 3 or 4; alpha is dropped), tensors [1, 3, H, W] float32 on the CPU
(callers move them). Two value ranges: `signed` [-1, 1] (the VAE's) and unsigned [0, 1] (spandrel
upscalers and restorers). Back to pixels: clamp to the range, map to [0, 1], times 255, round to
the nearest integer (ties to even). Every path uses these two functions, so a streamed tile, a
one-pass decode and a tiled decode of the same values give the same bytes.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(rgb: np.ndarray, *, signed: bool = True) -> torch.Tensor:
    """HxWx{3,4} uint8 -> [1, 3, H, W] float32 in [-1, 1] (`signed`) or [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb[..., :3])).permute(2, 0, 1)[None].float()
    return x / 127.5 - 1 if signed else x / 255.0


def to_pixels(img: torch.Tensor, *, signed: bool = True) -> np.ndarray:
    """[3, H, W] (or [1, 3, H, W]) float in [-1, 1] (`signed`) or [0, 1] -> HxWx3 uint8."""
    x = img[0] if img.dim() == 4 else img
    x = x.float()
    if signed:
        x = x / 2 + 0.5
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
