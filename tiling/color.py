"""Low-frequency colour anchoring: keep the result's detail, take its broad colour from a reference.

Tiled regeneration at low strength should not move low frequencies: any tile-correlated
brightness or hue drift lives there. ``anchor_low_frequency`` replaces the low-pass band of the
result with the reference's (``out = result + lowpass(reference - result)``), leaving every
frequency above the cut-off untouched. Big sigmas blur on a downsampled copy, so the cost stays
linear in the pixel count whatever the sigma.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gaussian_1d(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    c = x.shape[1]
    k = _gaussian_1d(sigma, x.dtype, x.device)
    r = (k.numel() - 1) // 2
    # Replicate padding: edges keep their own colour instead of fading to black or mirroring detail.
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian low-pass of [B, C, H, W]; approximated on a downsampled grid when sigma > 4."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    factor = max(1, min(int(sigma // 2), h, w))
    if factor == 1:
        return _blur(x, sigma)
    ph, pw = (-h) % factor, (-w) % factor
    small = F.avg_pool2d(F.pad(x, (0, pw, 0, ph), mode="replicate"), factor)
    small = _blur(small, sigma / factor)
    up = F.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
    return up[..., :h, :w]


def anchor_low_frequency(
    result: torch.Tensor, reference: torch.Tensor, sigma: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``result`` with its low-pass band (Gaussian ``sigma`` px) replaced by ``reference``'s.

    Both are float [B, C, H, W] in the same colour space. ``mask`` ([H, W] or broadcastable,
    0..1) limits the correction to where it is 1, e.g. the regenerated region. Works in float32
    or wider internally.
    """
    if result.shape != reference.shape:
        raise ValueError(f"shape mismatch {tuple(result.shape)} vs {tuple(reference.shape)}")
    work = torch.promote_types(result.dtype, torch.float32)
    correction = lowpass(reference.to(work) - result.to(work), sigma)
    if mask is not None:
        correction = correction * mask.to(work)
    return (result.to(work) + correction).to(result.dtype)
