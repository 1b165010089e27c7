from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler
from tiling_helpers import RADIUS, conv_model_fn, local_operator

from tiling.fused import TileRef, batch_sizes, fused_model_output
from tiling.plan import plan_tiles
from tiling.selection import blend_region, keep_outside, select_tiles

LAYOUTS = [
    (48, 48, 24, 8),  # 3x3 tiles
    (64, 40, 24, 10),  # non-square canvas
    (56, 72, 32, 12),
    (40, 40, 40, 8),  # single tile
]


def _latents(h: int, w: int, b: int = 1) -> torch.Tensor:
    return torch.randn(b, 4, h, w, generator=torch.Generator().manual_seed(h * w + b), dtype=torch.float64)


@pytest.mark.parametrize("w,h,tile,ov", LAYOUTS)
@pytest.mark.parametrize("batch_size", [1, 3, 64])
@pytest.mark.parametrize("jitter", [False, True])
def test_fused_equals_untiled_for_local_operator(w: int, h: int, tile: int, ov: int, batch_size: int, jitter: bool):
    conv = local_operator()
    x = _latents(h, w, b=2)
    plan = plan_tiles(w, h, tile, ov)
    if jitter:
        plan = plan.jittered(11, 4, min_overlap=2 * RADIUS + 1)
    calls: list[int] = []
    fused = fused_model_output(x, conv_model_fn(conv, calls), plan, batch_size, margin=RADIUS)
    with torch.no_grad():
        full = conv(x)
    assert torch.allclose(fused, full, atol=1e-10, rtol=0)
    assert sum(calls) == 2 * len(plan) and max(calls) <= batch_size


def test_batches_are_even_and_padding_gives_static_shapes() -> None:
    assert batch_sizes(9, 4) == [3, 3, 3]
    assert batch_sizes(10, 4) == [4, 3, 3]
    assert batch_sizes(0, 4) == []
    conv = local_operator()
    x = _latents(48, 48)
    plan = plan_tiles(48, 48, 24, 8)
    calls: list[int] = []
    out = fused_model_output(x, conv_model_fn(conv, calls), plan, 4, margin=RADIUS, pad_batches=True)
    assert set(calls) == {4}
    assert torch.allclose(out, conv(x).detach(), atol=1e-10, rtol=0)


def test_model_fn_receives_tile_refs() -> None:
    plan = plan_tiles(48, 40, 24, 8)
    seen: list[TileRef] = []

    def fn(t: torch.Tensor, refs):
        seen.extend(refs)
        for k, r in enumerate(refs):
            assert torch.equal(t[k], x[r.batch, :, r.y : r.bottom, r.x : r.right])
        return t

    x = _latents(40, 48, b=2)
    out = fused_model_output(x, fn, plan, 5)
    assert torch.allclose(out, x, atol=1e-12)  # identity model: the blend itself is exact
    assert {(r.x, r.y) for r in seen} == {(r.x, r.y) for r in plan.tiles} and {r.batch for r in seen} == {0, 1}


def _sample(scheduler_cls, x: torch.Tensor, model, steps: int = 8) -> torch.Tensor:
    sched = scheduler_cls(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    sched.set_timesteps(steps)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        x = sched.step(model(inp), t, x).prev_sample
    return x


SCHEDULERS = [DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler]


@pytest.mark.parametrize("scheduler_cls", SCHEDULERS)
def test_full_scheduler_loop_tiled_equals_untiled(scheduler_cls) -> None:
    conv = local_operator()
    x0 = _latents(48, 56)
    plan = plan_tiles(56, 48, 24, 10)
    fn = conv_model_fn(conv)
    step = [0]

    def tiled(inp: torch.Tensor) -> torch.Tensor:
        step[0] += 1  # a fresh jittered grid every step, as the server does
        return fused_model_output(inp, fn, plan.jittered(5, step[0], min_overlap=5), 3, margin=RADIUS)

    with torch.no_grad():
        ref = _sample(scheduler_cls, x0, conv)
    out = _sample(scheduler_cls, x0, tiled)
    assert torch.allclose(out, ref, atol=1e-8, rtol=1e-8)


def test_selection_culling_evaluates_only_touching_tiles_and_keeps_outside_bit_exact() -> None:
    conv = local_operator()
    x = _latents(64, 64)
    plan = plan_tiles(64, 64, 24, 8)
    mask = torch.zeros(64, 64)
    mask[5:9, 6:10] = 1  # a small selection in the top-left tile
    radius = 4
    active = select_tiles(plan, mask, radius)
    assert 0 < len(active) < len(plan)
    calls: list[int] = []
    fused = fused_model_output(x, conv_model_fn(conv, calls), plan, 8, mask, radius=radius, margin=RADIUS)
    assert sum(calls) == len(active)
    region = blend_region(plan, mask, radius)
    full = conv(x).detach()
    # Inside the blend region the culled result equals the full-canvas result...
    assert torch.allclose(fused[..., region], full[..., region], atol=1e-10, rtol=0)
    # ...and the composite leaves everything outside bit-identical to the input.
    out = keep_outside(x, fused, region)
    assert torch.equal(out[..., ~region], x[..., ~region])
    # Empty selection: nothing evaluated.
    calls.clear()
    fused_model_output(x, conv_model_fn(conv, calls), plan, 8, torch.zeros(64, 64))
    assert calls == []


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError):
        fused_model_output(torch.zeros(1, 4, 10, 10), lambda t, r: t, plan_tiles(12, 12, 8, 2), 2)
