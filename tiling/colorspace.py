"""sRGB -> CIELAB (D65) in numpy, so metrics need no imaging library."""

from __future__ import annotations

import numpy as np

_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def as_float_rgb(image: np.ndarray) -> np.ndarray:
    """HxWx3 float64 in [0, 1] from uint8 or float input."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected HxWx3, got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return np.clip(arr.astype(np.float64), 0.0, 1.0)


def srgb_to_lab(image: np.ndarray) -> np.ndarray:
    """HxWx3 sRGB (uint8 or float in [0, 1]) -> HxWx3 L*a*b* (L* in [0, 100])."""
    rgb = as_float_rgb(image)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    eps = (6 / 29) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def luminance(image: np.ndarray) -> np.ndarray:
    """HxW perceptual lightness L*/100 in [0, 1]; 2-D input is taken as already luminance."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        return arr.astype(np.float64) / (255.0 if arr.dtype == np.uint8 else 1.0)
    return srgb_to_lab(arr)[..., 0] / 100.0
