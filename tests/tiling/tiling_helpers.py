"""Shared fixtures for tiling tests: a fixed local operator and smooth synthetic images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tiling.geometry import Rect

RADIUS = 2  # the 5x5 operator's receptive-field radius


def local_operator(channels: int = 4, seed: int = 0) -> torch.nn.Conv2d:
    """A fixed random 5x5 conv: local, translation invariant, wrong only within RADIUS of a crop edge."""
    gen = torch.Generator().manual_seed(seed)
    conv = torch.nn.Conv2d(channels, channels, 5, padding=RADIUS)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.1)
        conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
    return conv.double()


def conv_model_fn(conv: torch.nn.Conv2d, calls: list[int] | None = None):
    def fn(x: torch.Tensor, refs: Sequence[Rect]) -> torch.Tensor:
        assert x.shape[0] == len(refs)
        if calls is not None:
            calls.append(x.shape[0])
        with torch.no_grad():
            return conv(x.to(conv.weight.dtype)).to(x.dtype)

    return fn


def smooth_gradient(h: int, w: int) -> np.ndarray:
    """HxWx3 float image in [0, 1]: slow diagonal colour ramps, the case where seams show most."""
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = xx / max(w - 1, 1), yy / max(h - 1, 1)
    return np.stack([0.25 + 0.5 * u, 0.3 + 0.4 * v, 0.45 + 0.2 * (u + v) / 2], axis=-1)


def latent_preview(latents: torch.Tensor) -> np.ndarray:
    """[1, 4, h, w] latent -> hxwx3 float image via a fixed linear map and a global min/max stretch."""
    mix = torch.tensor([[0.3, 0.2, -0.1, 0.1], [0.1, 0.3, 0.2, -0.1], [-0.1, 0.1, 0.3, 0.2]], dtype=latents.dtype)
    rgb = torch.einsum("oc,chw->hwo", mix, latents[0])
    rgb = (rgb - rgb.amin()) / (rgb.amax() - rgb.amin())
    return rgb.double().numpy()


def upsample_nearest(latents: torch.Tensor, factor: int = 8) -> torch.Tensor:
    return F.interpolate(latents, scale_factor=factor, mode="nearest")
