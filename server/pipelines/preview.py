"""Cheap progress previews: a fixed linear map from latent channels to RGB (no VAE decode)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..imaging.tensors import to_pixels

# Least-squares fits of latent → RGB published for SD1.x and SDXL latents (widely used by UIs).
_SD15 = (
    [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]],
    [0.0, 0.0, 0.0],
)
_SDXL = (
    [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]],
    [0.1084, -0.0175, -0.0011],
)


def latent_rgb(latents: torch.Tensor, xl: bool) -> np.ndarray:
    """First latent of the batch → HxWx3 uint8 at latent resolution."""
    factors, bias = _SDXL if xl else _SD15
    m = torch.tensor(factors, dtype=torch.float32)
    x = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", x, m) + torch.tensor(bias)
    return to_pixels(rgb.permute(2, 0, 1))


# What a progress callback gets: the preview pixels, or a function that makes them. The queue calls it
# only for the previews it sends (throttled), so an unsent preview costs no device-to-host copy.
Preview = np.ndarray | Callable[[], np.ndarray] | None


def lazy_preview(latents: torch.Tensor, xl: bool) -> Callable[[], np.ndarray]:
    """`latent_rgb(latents, xl)` when called: callers keep the step loop free of host syncs."""
    return lambda: latent_rgb(latents, xl)
