"""`server.pipelines.tiled` with the tiny real models: batch-size invariance (keyed noise, also for an
ancestral sampler), culling that keeps unselected latents bit-identical, per-tile SDXL crop conditioning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.errors import Cancelled
from server.models.registry import ModelManager
from server.pipelines import denoise, tiled
from server.prompt import encode_pair
from tiling.fused import TileRef


@pytest.fixture(scope="module")
def manager(models_dir: Path) -> ModelManager:
    return ModelManager(models_dir, torch.device("cpu"), torch.float32)


def _sampler(manager: ModelManager, name: str, sampler: str, **kw) -> tiled.TiledSampler:
    model = manager.get(name)
    cond, uncond = encode_pair(model, "a cat", "", 1)
    lw, lh = 30, 22  # 3 x 2 tiles of 12
    guidance = denoise.Guidance(model, cond, uncond, 5.0, lw * 8, lh * 8)
    plan = tiled.plan_for(model, lw, lh, 0.5, tile=12)
    init = torch.randn(1, 4, lh, lw, generator=torch.Generator().manual_seed(0))
    return tiled.TiledSampler(model, guidance, plan, sampler, 6, 7, init=init, strength=0.5, **kw)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M"])
def test_batch_size_does_not_change_the_result(manager: ModelManager, sampler: str) -> None:
    a = _sampler(manager, "tiny-sd15", sampler, batch=1, jitter=True)
    b = _sampler(manager, "tiny-sd15", sampler, batch=5, jitter=True)
    assert len(a.plan) > 4 and a.unet_evals == b.unet_evals == a.tile_steps * 2
    seen: list[tuple[int, int]] = []
    out_a = a.run(lambda step, total, _p: seen.append((step, total)))
    out_b = b.run()
    assert torch.equal(out_a, out_b)  # the UNet is batch-invariant (models.batchinv): same bits
    assert seen[-1] == (a.unet_evals, a.unet_evals)


def test_culling_keeps_unselected_latents_bit_identical(manager: ModelManager) -> None:
    mask = torch.zeros(22, 30)
    mask[2:6, 3:9] = 1.0
    ts = _sampler(manager, "tiny-sd15", "Euler", mask=mask)
    assert ts.tiles < len(ts.plan)
    work = ts.work_rect()
    assert work is not None and work.x == 0 and work.y == 0 and work.right < 30
    calls: list[int] = []
    out = ts.run(lambda step, total, p: calls.append(step) if p is None else None)
    assert out.shape == ts.init.shape
    keep = mask == 0
    assert torch.equal(out[0][:, keep], ts.init[0][:, keep])
    assert not torch.equal(out[0][:, ~keep], ts.init[0][:, ~keep])
    assert calls[-1] == ts.unet_evals


def test_cancel_between_tile_batches(manager: ModelManager) -> None:
    ts = _sampler(manager, "tiny-sd15", "Euler", batch=1)
    n = [0]

    def cancelled() -> bool:
        n[0] += 1
        return n[0] > 3

    with pytest.raises(Cancelled):
        ts.run(cancelled=cancelled)
    assert n[0] == 4  # stopped inside the first step, after three tile batches


def test_sdxl_tiles_get_their_own_crop_coordinates(manager: ModelManager) -> None:
    model = manager.get("tiny-sdxl")
    cond, uncond = encode_pair(model, "a cat", "", 1)
    g = denoise.Guidance(model, cond, uncond, 5.0, 640, 480)
    refs = [TileRef(0, 0, 16, 16), TileRef(24, 8, 16, 16)]
    ids = tiled.tile_kwargs(g, refs)["added_cond_kwargs"]["time_ids"]
    assert ids.shape == (4, 6)
    assert ids[1].tolist() == [480, 640, 64, 192, 128, 128]  # uncond branch, second tile
    assert ids[3].tolist() == [480, 640, 64, 192, 128, 128]  # cond branch, second tile
    assert ids[0].tolist() == [480, 640, 0, 0, 128, 128]


def test_large_generate_uses_the_fused_tiler(server) -> None:
    from tests.conftest import connect, run

    events: list[dict] = []

    async def go() -> dict:
        async with await connect(server.url) as c:
            return await c.run(
                "generate",
                {"prompt": "a hill", "model": "tiny-sd15", "seed": 1, "steps": 2, "width": 176, "height": 96},
                {},
                on_event=events.append,
            )

    res = run(go())
    (plan,) = [e for e in events if e["type"] == "plan"]  # beyond 2x the native 64 px side: tiled
    assert plan["canvas"] == [176, 96] and plan["tiles"] > 1
    assert (res["images"][0]["w"], res["images"][0]["h"]) == (176, 96)
