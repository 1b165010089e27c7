from __future__ import annotations

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from tiling_helpers import RADIUS, conv_model_fn, local_operator

from tiling.fused import fused_model_output
from tiling.geometry import Rect
from tiling.noise import keyed_noise, keyed_noise_batch, step_stream, step_with_noise
from tiling.plan import plan_tiles
from tiling.selection import blend_region, keep_outside

SCHED_KW = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


@settings(max_examples=40, deadline=None)
@given(x=st.integers(-40, 90), y=st.integers(-40, 90), w=st.integers(1, 70), h=st.integers(1, 70))
def test_any_crop_matches_the_big_canvas(x: int, y: int, w: int, h: int) -> None:
    big = keyed_noise(3, 4, Rect(-64, -64, 256, 256), block=16)
    crop = keyed_noise(3, 4, Rect(x, y, w, h), block=16)
    assert torch.equal(crop, big[:, y + 64 : y + 64 + h, x + 64 : x + 64 + w])


def test_canvas_shape_form_and_independence() -> None:
    a = keyed_noise(1, 4, (40, 72))
    assert a.shape == (4, 40, 72)
    assert torch.equal(a, keyed_noise(1, 4, Rect(0, 0, 72, 40)))
    assert not torch.equal(a, keyed_noise(2, 4, (40, 72)))
    assert not torch.equal(a, keyed_noise(1, 4, (40, 72), stream=step_stream(0)))
    big = keyed_noise(0, 4, (256, 256))
    assert abs(float(big.mean())) < 0.02 and abs(float(big.std()) - 1) < 0.02
    # Neighbouring blocks are not copies of each other (the "same seed per tile" failure).
    assert not torch.allclose(big[:, :32, :32], big[:, :32, 32:64])
    assert keyed_noise_batch([1, 2], 4, (8, 8)).shape == (2, 4, 8, 8)
    assert keyed_noise(1, 4, (8, 8), dtype=torch.float16).dtype == torch.float16


def _img2img(
    z0: torch.Tensor,
    plan,
    batch_size: int,
    seed: int,
    *,
    steps: int = 10,
    strength: float = 0.6,
    mask: torch.Tensor | None = None,
    radius: int = 0,
    ancestral: bool = False,
    region: Rect | None = None,
) -> torch.Tensor:
    """A small img2img loop: keyed noise, fused local operator, one scheduler step per canvas."""
    cls = EulerAncestralDiscreteScheduler if ancestral else EulerDiscreteScheduler
    sched = cls(**SCHED_KW)
    sched.set_timesteps(steps)
    ts = sched.timesteps[steps - int(steps * strength) :]
    sched.set_begin_index(steps - int(steps * strength))
    canvas = region or Rect(0, 0, z0.shape[-1], z0.shape[-2])
    eps0 = keyed_noise(seed, 4, canvas, dtype=z0.dtype)[None]
    x = sched.add_noise(z0, eps0, ts[:1])
    fn = conv_model_fn(local_operator())
    blend = None if mask is None else blend_region(plan, mask, radius)
    for i, t in enumerate(ts):
        if blend is not None:
            x = keep_outside(sched.add_noise(z0, eps0, t[None]), x, blend)
        pred = fused_model_output(
            sched.scale_model_input(x, t), fn, plan, batch_size, mask, radius=radius, margin=RADIUS
        )
        if ancestral:
            noise = keyed_noise(seed, 4, canvas, stream=step_stream(i), dtype=x.dtype)[None]
            x = step_with_noise(sched, pred, t, x, noise).prev_sample
        else:
            x = sched.step(pred, t, x).prev_sample
    return x if blend is None else keep_outside(z0, x, blend)


@pytest.mark.parametrize("ancestral", [False, True])
def test_result_does_not_depend_on_layout_or_batch(ancestral: bool) -> None:
    z0 = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _img2img(z0, plan_tiles(64, 64, 64, 8), 1, seed=9, ancestral=ancestral)  # one tile = untiled
    for tile, ov, bs in [(24, 8, 1), (32, 12, 4), (40, 16, 3)]:
        out = _img2img(z0, plan_tiles(64, 64, tile, ov), bs, seed=9, ancestral=ancestral)
        assert torch.allclose(out, ref, atol=1e-9, rtol=0), (tile, ov, bs)


def test_selection_rerun_reproduces_full_run_and_keeps_outside() -> None:
    z0 = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plan = plan_tiles(64, 64, 24, 8)
    full = _img2img(z0, plan, 4, seed=5)
    mask = torch.zeros(64, 64)
    mask[20:44, 24:40] = 1
    radius, steps = 6, 6
    sel = _img2img(z0, plan, 4, seed=5, mask=mask, radius=radius)
    region = blend_region(plan, mask, radius)
    assert torch.equal(sel[..., ~region], z0[..., ~region])  # bit-exact outside
    # Deep inside, the pinned outside cannot reach (RADIUS px per step): identical to the full run.
    core = torch.zeros(64, 64, dtype=torch.bool)
    core[
        20 - radius + RADIUS * steps : 44 + radius - RADIUS * steps,
        24 - radius + RADIUS * steps : 40 + radius - RADIUS * steps,
    ] = True
    assert core.any()
    assert torch.allclose(sel[..., core], full[..., core], atol=1e-9, rtol=0)


def test_step_with_noise_matches_the_scheduler_own_draw() -> None:
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    a, b = EulerAncestralDiscreteScheduler(**SCHED_KW), EulerAncestralDiscreteScheduler(**SCHED_KW)
    a.set_timesteps(5)
    b.set_timesteps(5)
    t = a.timesteps[0]
    ref = a.step(out, t, sample, generator=torch.Generator().manual_seed(42)).prev_sample
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(42))
    got = step_with_noise(b, out, t, sample, noise).prev_sample
    assert torch.equal(got, ref)
    with pytest.raises(ValueError):
        step_with_noise(b, out, b.timesteps[1], sample, noise[..., :4])
