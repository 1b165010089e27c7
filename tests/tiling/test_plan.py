from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.plan import (
    AxisLayout,
    overlap_for_strength,
    plan_axis,
    plan_tiles,
    unet_evaluations,
    usdu_evaluations,
)
from tiling.steps import steps_run


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 700), tile=st.integers(8, 200), ov_frac=st.floats(0, 0.45))
def test_axis_layout_covers_uniformly(length: int, tile: int, ov_frac: float) -> None:
    overlap = int(tile * ov_frac)
    axis = plan_axis(length, tile, overlap, multiple=8)
    assert axis.starts[0] == 0 and axis.starts[-1] + axis.tile == axis.length == length
    if axis.count > 1:
        assert axis.tile % 8 == 0
        assert min(axis.overlaps) >= overlap
        # Evenly spread: no sliver, overlaps differ by at most one pixel.
        assert max(axis.overlaps) - min(axis.overlaps) <= 1
        assert axis.tile <= math.ceil(tile * 1.12) + 8
    else:
        assert axis.tile == length


def test_cost_cliff_avoided() -> None:
    # 2 tiles wide exactly: the textbook planner needs 3 as soon as there is any overlap.
    axis = plan_axis(256, 128, 16)
    assert axis.count == 2 and axis.tile == 136
    # Same with slack off: falls over the cliff.
    assert plan_axis(256, 128, 16, slack=0).count == 3


def test_last_tile_is_not_a_sliver() -> None:
    axis = plan_axis(300, 128, 16)
    assert len(set(axis.overlaps)) <= 2
    assert all(o < axis.tile / 2 for o in axis.overlaps)


def test_invalid_layouts_rejected() -> None:
    with pytest.raises(ValueError):
        AxisLayout(100, 40, (0, 70))  # gap between 40 and 70
    with pytest.raises(ValueError):
        plan_axis(100, 32, 32)


def test_overlap_grows_with_strength() -> None:
    values = [overlap_for_strength(128, s) for s in (0.0, 0.2, 0.35, 0.6, 1.0)]
    assert values == sorted(values) and values[0] >= 2 and values[-1] <= 64
    assert all(v % 2 == 0 for v in values)


def test_jitter_is_deterministic_and_keeps_coverage() -> None:
    plan = plan_tiles(200, 160, 48, 16)
    assert plan.xs.count >= 3 and plan.ys.count >= 3
    seen = set()
    for step in range(20):
        a = plan.jittered(7, step, min_overlap=6)
        assert a == plan.jittered(7, step, min_overlap=6)
        assert a.tile_w == plan.tile_w and len(a) == len(plan)
        assert min(a.xs.overlaps) >= 6 and min(a.ys.overlaps) >= 6
        seen.add((a.xs.starts, a.ys.starts))
    assert len(seen) > 5  # it actually moves
    assert plan.jittered(8, 0) != plan.jittered(7, 0) or plan.jittered(8, 1) != plan.jittered(7, 1)


def test_jitter_max_shift_and_two_tile_axes() -> None:
    plan = plan_tiles(200, 100, 48, 16)
    for step in range(10):
        j = plan.jittered(1, step, max_shift=2)
        assert all(abs(a - b) <= 2 for a, b in zip(j.xs.starts, plan.xs.starts, strict=True))
    two = plan_tiles(80, 80, 48, 16)
    assert two.xs.count == 2 and two.jittered(0, 3) == two


def test_evaluation_counts() -> None:
    # SDXL 2048^2 -> 4096^2 at strength 0.35, 30 steps: latent canvas 512^2, nominal tile 128 (1024 px).
    plan = plan_tiles(512, 512, 128, overlap_for_strength(128, 0.35))
    assert steps_run(30, 0.35) == 10
    ours = unet_evaluations(plan, 30, 0.35)
    usdu = usdu_evaluations(4096, 4096, 30, 0.35, tile_px=1024)
    mp = 4096 * 4096 / 1e6
    assert ours == len(plan) * 10
    # Reported numbers (see the module report): evaluations per output megapixel.
    assert ours / mp < 2 * usdu / mp
    assert unet_evaluations(plan, 30, 0.35, cfg=True) == 2 * ours
    assert unet_evaluations(plan, 30, 0.35, tiles=3) == 30
