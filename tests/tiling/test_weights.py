from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tiling.plan import plan_tiles
from tiling.weights import TileWeights, axis_windows


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(8, 300),
    h=st.integers(8, 300),
    tile=st.integers(16, 96),
    ov=st.floats(0.1, 0.45),
    margin=st.integers(0, 3),
    seed=st.integers(0, 10),
    jitter=st.booleans(),
)
def test_partition_of_unity(w: int, h: int, tile: int, ov: float, margin: int, seed: int, jitter: bool) -> None:
    overlap = max(2 * margin + 1, int(tile * ov))
    if overlap >= tile:
        return
    plan = plan_tiles(w, h, tile, overlap)
    if jitter:
        plan = plan.jittered(seed, 3, min_overlap=2 * margin + 1)
    total = TileWeights.for_plan(plan, margin).canvas_sum()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6, rtol=0)


def test_windows_flat_at_canvas_edges_and_smooth() -> None:
    plan = plan_tiles(200, 64, 64, 24)
    windows = axis_windows(plan.xs)
    assert windows[0][0] == 1 and windows[-1][-1] == 1  # no falloff where there is no neighbour
    ramp = min(plan.xs.overlaps)
    for wnd in windows:
        assert float(wnd.diff().abs().max()) <= torch.pi / (2 * ramp) + 1e-9  # raised-cosine slope bound
        assert float(wnd.min()) >= 0 and float(wnd.max()) <= 1


def test_margin_zeroes_shared_edges() -> None:
    plan = plan_tiles(120, 40, 48, 16)
    wx = axis_windows(plan.xs, margin=3)
    assert torch.all(wx[0][-3:] == 0) and torch.all(wx[1][:3] == 0) and torch.all(wx[1][-3:] == 0)
    assert wx[0][0] == 1
