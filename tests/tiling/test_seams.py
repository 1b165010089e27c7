from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import EulerDiscreteScheduler
from tiling_helpers import smooth_gradient

from tiling.color import anchor_low_frequency
from tiling.fused import fused_model_output
from tiling.geometry import Rect
from tiling.naive import naive_paste
from tiling.noise import keyed_noise
from tiling.plan import plan_tiles
from tiling.seams import plan_cells, plan_seams, sgr_ms, tile_colour_drift

PLAN = plan_tiles(64, 64, 24, 8)  # latent plan; x8 = a 512 px canvas
SX, SY = plan_seams(PLAN, 8)
CX, CY = plan_cells(PLAN, 8)


def _textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(smooth_gradient(512, 512) + rng.normal(0, 0.02, (512, 512, 3)), 0, 1)


@pytest.mark.parametrize("make", [lambda: smooth_gradient(512, 512), _textured])
def test_seam_free_images_pass_and_steps_are_caught(make) -> None:
    base = make()
    zs = []
    for delta in (0, 1, 2, 4):
        img = base.copy()
        for s in SX[::3]:  # a luminance step at one edge of every overlap band
            img[:, s:] += delta / 255
        zs.append(sgr_ms(np.clip(img, 0, 1), SX, SY).z)
    assert zs[0] < 3, zs
    assert zs[2] > 3, zs  # 2/255 is caught
    assert zs == sorted(zs)  # monotonic in the step size


def test_blended_steps_are_caught_at_a_coarse_scale() -> None:
    # A 3/255 step smeared linearly over 8 px: weak at scale 1, caught by downsampling. (Smeared over
    # 16 px it only doubles the image's own slope there and is not flagged, which is why blending works.)
    img = smooth_gradient(512, 512)
    for s in SX[::3]:
        ramp = np.clip((np.arange(512) - s) / 8, 0, 1)
        img += (3 / 255) * ramp[None, :, None]
    score = sgr_ms(np.clip(img, 0, 1), SX, SY)
    assert score.z > 3 and score.worst[1] > 1


def test_tile_colour_drift_catches_per_tile_offsets() -> None:
    ref = smooth_gradient(512, 512)
    assert tile_colour_drift(ref, ref, CX, CY).max_adjacent == 0
    rng = np.random.default_rng(1)
    out = ref.copy()
    for r in range(len(CY) - 1):
        for c in range(len(CX) - 1):
            out[CY[r] : CY[r + 1], CX[c] : CX[c + 1]] += rng.uniform(-4, 4, 3) / 255
    drift = tile_colour_drift(np.clip(out, 0, 1), ref, CX, CY)
    assert drift.max_adjacent > 1.0  # dE76 between neighbouring cells
    uniform = tile_colour_drift(np.clip(ref + 3 / 255, 0, 1), ref, CX, CY)
    assert uniform.max_adjacent < 0.3 and uniform.global_drift > 0.5  # global shift is not tile drift
    # A brightness checkerboard of +-2/255 per cell is also a seam.
    checker = ref.copy()
    for r in range(len(CY) - 1):
        for c in range(len(CX) - 1):
            checker[CY[r] : CY[r + 1], CX[c] : CX[c + 1]] += (2 / 255) * (-1) ** (r + c)
    assert sgr_ms(np.clip(checker, 0, 1), SX, SY).z > 3


SCHED_KW = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def _denoiser(x: torch.Tensor, beta: float) -> torch.Tensor:
    """x0 estimate: a local blur pulled toward the crop's own mean brightness.

    The pull is what per-tile GroupNorm does to a real UNet ("SD drifts toward the average
    brightness"): it makes each tile's prediction depend on the whole tile, not only on a
    neighbourhood, so tiles that never see each other disagree.
    """
    k = torch.ones(3, 1, 5, 5, dtype=x.dtype) / 25
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=3)
    return (1 - beta) * blurred + beta * x.mean(dim=(2, 3), keepdim=True)


def _img2img(z: torch.Tensor, model, canvas: Rect, steps: int = 10, strength: float = 0.4) -> torch.Tensor:
    sched = EulerDiscreteScheduler(**SCHED_KW)
    sched.set_timesteps(steps)
    start = steps - int(steps * strength)
    sched.set_begin_index(start)
    x = sched.add_noise(z, 0.2 * keyed_noise(3, 3, canvas, dtype=z.dtype)[None], sched.timesteps[start : start + 1])
    for t in sched.timesteps[start:]:
        xin = sched.scale_model_input(x, t)
        x = sched.step(model(xin, float(sched.sigmas[sched.step_index])), t, x).prev_sample
    return x


@pytest.mark.parametrize("beta,anchor", [(0.03, False), (0.1, True), (0.3, True)])
def test_naive_tiler_fails_the_metric_and_ours_passes(beta: float, anchor: bool) -> None:
    size = 256
    ref = torch.from_numpy(smooth_gradient(size, size)).permute(2, 0, 1)[None]
    z0 = ref * 2 - 1
    plan = plan_tiles(size, size, 96, 24)  # this test tiles in pixel units

    def eps(xin: torch.Tensor, sigma: float) -> torch.Tensor:
        x = xin * (sigma**2 + 1) ** 0.5
        return (x - _denoiser(x, beta)) / sigma

    ours = _img2img(z0, lambda x, s: fused_model_output(x, lambda t, refs: eps(t, s), plan, 16), Rect(0, 0, size, size))
    naive = naive_paste(z0, lambda t, r: _img2img(t, eps, r), plan)
    if anchor:  # low-frequency anchoring to the input, as the upscale job does at low strength
        ours, naive = anchor_low_frequency(ours, z0, 12), anchor_low_frequency(naive, z0, 12)
    sx, sy = plan_seams(plan)

    def z_of(x: torch.Tensor) -> float:
        return sgr_ms(((x[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy(), sx, sy).z

    z_ours, z_naive = z_of(ours), z_of(naive)
    assert z_ours < 3 < z_naive, (z_ours, z_naive)
