"""Noise keyed to global canvas position.

Noise is drawn in fixed ``block`` x ``block`` cells, each from its own CPU ``torch.Generator``
seeded by (seed, stream, cell x, cell y). Any crop of the canvas therefore gets exactly the values
the full canvas has at those positions: results do not depend on tile size, batch size, canvas
size or how much of the canvas is selected. (Peers either reuse one seed per tile, giving
periodic noise, or draw one canvas-shaped tensor, so every change of canvas changes all noise.)

``stream`` separates independent noise fields: 0 is the initial noise, ``step_stream(i)`` the
per-step noise of ancestral/SDE samplers. diffusers schedulers draw that noise internally from
a ``generator`` with ``randn_tensor``, which cannot be keyed by position, so ``step_with_noise``
runs the scheduler's own ``step`` with our noise substituted for that one draw.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ._keys import key64
from .geometry import Rect

DEFAULT_BLOCK = 32


def step_stream(step: int) -> int:
    """Stream id for the noise an ancestral sampler adds at ``step`` (stream 0 is the initial noise)."""
    return step + 1


def _as_rect(region: Rect | tuple[int, int]) -> Rect:
    if isinstance(region, Rect):
        return region
    height, width = region
    return Rect(0, 0, width, height)


def keyed_noise(
    seed: int,
    channels: int,
    region: Rect | tuple[int, int],
    *,
    stream: int = 0,
    block: int = DEFAULT_BLOCK,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Standard normal noise [channels, h, w] for ``region`` of an unbounded keyed canvas.

    ``region`` is a ``Rect`` in canvas coordinates or a ``(height, width)`` canvas shape (the
    tensor-shape order). Values are generated in float32 on the CPU, then cast and moved, so they
    are identical on every device.
    """
    r = _as_rect(region)
    out = torch.empty(channels, r.h, r.w, dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for by in range(r.y // block, -(-r.bottom // block)):
        for bx in range(r.x // block, -(-r.right // block)):
            cell = Rect(bx * block, by * block, block, block)
            part = cell.intersection(r)
            if part.is_empty:
                continue
            gen.manual_seed(key64(seed, stream, bx, by, channels, block))
            values = torch.randn(channels, block, block, generator=gen)
            src, dst = part.relative_to(cell), part.relative_to(r)
            out[:, dst.y : dst.bottom, dst.x : dst.right] = values[:, src.y : src.bottom, src.x : src.right]
    return out.to(device=device, dtype=dtype)


def keyed_noise_batch(
    seeds: Sequence[int],
    channels: int,
    region: Rect | tuple[int, int],
    **kwargs: Any,
) -> torch.Tensor:
    """[len(seeds), channels, h, w]: one keyed field per batch element."""
    return torch.stack([keyed_noise(s, channels, region, **kwargs) for s in seeds])


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _supplied_randn(module_name: str, noise: torch.Tensor) -> Iterator[list[int]]:
    module = sys.modules[module_name]
    if not hasattr(module, "randn_tensor"):
        raise TypeError(f"{module_name} does not draw noise with randn_tensor")
    original = module.randn_tensor
    calls = [0]

    def supplied(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **_: Any) -> torch.Tensor:
        if tuple(shape) != tuple(noise.shape):
            raise ValueError(f"scheduler asked for noise {tuple(shape)}, supplied {tuple(noise.shape)}")
        calls[0] += 1
        return noise.to(device=device or noise.device, dtype=dtype or noise.dtype)

    # The scheduler module looks randn_tensor up at call time, so swapping the module attribute is
    # enough; the lock keeps concurrent steps in this process from seeing each other's noise.
    with _PATCH_LOCK:
        module.randn_tensor = supplied
        try:
            yield calls
        finally:
            module.randn_tensor = original


def step_with_noise(
    scheduler: Any,
    model_output: torch.Tensor,
    timestep: Any,
    sample: torch.Tensor,
    noise: torch.Tensor,
    **kwargs: Any,
) -> Any:
    """``scheduler.step(...)`` with ``noise`` used wherever the step would draw random noise.

    Works for diffusers schedulers that draw through ``randn_tensor`` (Euler ancestral, DDPM,
    DPM++ SDE variants, ...). The scheduler's own arithmetic runs unchanged; only the source
    of the noise differs, so keyed per-step noise (``keyed_noise(seed, C, rect,
    stream=step_stream(i))``) keeps ancestral sampling independent of tiling and selection.
    """
    with _supplied_randn(type(scheduler).__module__, noise):
        return scheduler.step(model_output, timestep, sample, **kwargs)
