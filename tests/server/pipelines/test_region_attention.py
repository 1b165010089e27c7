"""Masked cross-attention (`pipelines.regionattn`) and the per-call region weights (`pipelines.regions`)
on the tiny SD1.5 and SDXL checkpoints: one-hot weights are the plain call bit for bit, a region's text
reaches only the tokens under its weight, the weights follow every UNet level's token grid (odd sizes
too), and the job's processors are put back when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from server.models.loader import LoadedModel, load_single_file
from server.models.testmodels import write_sd_checkpoint
from server.pipelines import regionattn
from server.pipelines.regions import PromptText, RegionGuide, grids, prompt_weights
from server.prompt import Conditioning
from tiling.geometry import Rect

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = write_sd_checkpoint(tmp_path_factory.mktemp("ckpt"), request.param)
    return load_single_file(path, f"tiny-{request.param}", CPU, torch.float32, False)


def _text(model: LoadedModel, seed: int, tokens: int = 77) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    width = model.unet.config.cross_attention_dim
    pooled = torch.randn(1, 32, generator=g) if model.family.xl else None
    return Conditioning(torch.randn(1, tokens, width, generator=g), pooled)


def _kwargs(model: LoadedModel, text: Conditioning, n: int) -> dict:
    kw: dict = {"encoder_hidden_states": text.embeds.expand(n, -1, -1)}
    if model.family.xl:
        assert text.pooled is not None
        kw["added_cond_kwargs"] = {"text_embeds": text.pooled.expand(n, -1), "time_ids": torch.ones(n, 6) * 64}
    return kw


def _levels(model: LoadedModel) -> int:
    return len(model.unet.config.block_out_channels)


def _payload(texts: list[torch.Tensor], weights: torch.Tensor, levels: int) -> dict:
    """weights [n, P, h, w] → the processors' payload (as RegionGuide builds it)."""
    out = {}
    for gh, gw in grids(weights.shape[-2], weights.shape[-1], levels):
        out[str(gh * gw)] = torch.nn.functional.adaptive_avg_pool2d(weights, (gh, gw)).flatten(2).transpose(1, 2)
    return {"text": {f"{p:02d}": t for p, t in enumerate(texts)}, "weight": out}


def _unet(model: LoadedModel, x: torch.Tensor, kw: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.unet(x, torch.tensor(400.0), **kw).sample


@pytest.mark.parametrize("size", [(8, 8), (9, 13)])
def test_one_hot_weights_are_the_plain_call_bit_for_bit(model: LoadedModel, size: tuple[int, int]) -> None:
    h, w = size
    x = torch.randn(2, 4, h, w, generator=torch.Generator().manual_seed(1))
    a, b = _text(model, 1), _text(model, 2)
    plain = _unet(model, x, _kwargs(model, b, 2))
    regionattn.install(model)
    try:
        weights = torch.zeros(2, 2, h, w)
        weights[:, 1] = 1.0  # prompt b everywhere: the processors' blend must be b's attention exactly
        payload = _payload([a.embeds.expand(2, -1, -1), b.embeds.expand(2, -1, -1)], weights, _levels(model))
        regional = _unet(model, x, _kwargs(model, b, 2) | {"cross_attention_kwargs": {"regions": payload}})
        assert torch.equal(regional, plain)  # also proves the grids match every attention layer (else ValueError)
        assert torch.equal(_unet(model, x, _kwargs(model, b, 2)), plain)  # wrapped, no payload: plain
    finally:
        model.undo_job_changes()


def _cross_attention_layers(model: LoadedModel) -> list[torch.nn.Module]:
    return [m for n, m in model.unet.named_modules() if n.endswith("attn2")]


def test_a_regions_text_reaches_only_the_tokens_under_its_weight(model: LoadedModel) -> None:
    g = torch.Generator().manual_seed(3)
    bg, region, other = (_text(model, s).embeds.expand(2, -1, -1) for s in (4, 5, 6))
    grid = torch.zeros(8, 8)
    grid[:, :2] = 1.0
    grid[:, 2] = 0.4  # the region: three left columns, the third one its soft edge
    inside = grid > 0
    weight = torch.stack([1 - grid.flatten(), grid.flatten()], -1).expand(2, -1, -1)
    for attn in _cross_attention_layers(model):
        proc = regionattn.RegionAttnProcessor(attn.processor)
        hs = torch.randn(2, 64, attn.to_q.in_features, generator=g)
        with torch.no_grad():
            one = proc(attn, hs, bg, regions={"text": {"00": bg, "01": region}, "weight": {"64": weight}})
            two = proc(attn, hs, bg, regions={"text": {"00": bg, "01": other}, "weight": {"64": weight}})
        changed = (one != two).any(-1).reshape(2, 8, 8)
        assert changed[:, inside].all()
        assert not changed[:, ~inside].any()  # outside the region's weight: bit-identical


def test_unknown_processors_are_blended_by_their_outputs(model: LoadedModel) -> None:
    attn = _cross_attention_layers(model)[0]
    g = torch.Generator().manual_seed(7)
    texts = [_text(model, s).embeds.expand(2, -1, -1) for s in (8, 9, 10)]
    weight = torch.softmax(torch.randn(2, 64, 3, generator=g), -1)
    hs = torch.randn(2, 64, attn.to_q.in_features, generator=g)
    payload = {"text": {f"{p:02d}": t for p, t in enumerate(texts)}, "weight": {"64": weight}}
    with torch.no_grad():
        fast = regionattn.RegionAttnProcessor(AttnProcessor2_0())(attn, hs, texts[0], regions=payload)
        generic = regionattn.RegionAttnProcessor(AttnProcessor())(attn, hs, texts[0], regions=payload)
    torch.testing.assert_close(fast, generic, rtol=1e-4, atol=1e-5)


def test_missing_grid_is_a_clear_error(model: LoadedModel) -> None:
    attn = _cross_attention_layers(model)[0]
    text = _text(model, 1).embeds
    hs = torch.zeros(1, 64, attn.to_q.in_features)
    payload = {"text": {"00": text}, "weight": {"16": torch.ones(1, 16, 1)}}
    with pytest.raises(ValueError, match="no region weights for a 64-token attention grid"):
        regionattn.RegionAttnProcessor(attn.processor)(attn, hs, text, regions=payload)


def test_install_is_for_the_job_and_reuses_its_wrappers(model: LoadedModel) -> None:
    before = model.unet.attn_processors
    regionattn.install(model)
    first = model.unet.attn_processors
    assert all(isinstance(p, regionattn.RegionAttnProcessor) for p in first.values())
    assert {k: p.inner for k, p in first.items()} == before
    regionattn.install(model)  # twice in one job: still one layer of wrappers
    assert model.unet.attn_processors == first
    model.undo_job_changes()
    assert model.unet.attn_processors == before and not regionattn.installed(model)
    regionattn.install(model)  # the next job gets the very same wrapper objects (compiled UNets keep their guards)
    assert model.unet.attn_processors == first
    model.undo_job_changes()


def test_prompt_weights_sum_to_one() -> None:
    masks = torch.zeros(2, 4, 4)
    masks[0, :, :2] = 1.0
    masks[1, :, 1:3] = 1.0
    masks[1, 3, 3] = 0.25
    w = prompt_weights(masks, [1.0, 0.5])
    torch.testing.assert_close(w.sum(0), torch.ones(4, 4))
    assert torch.equal(w[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))  # region 0 alone: exactly 1
    torch.testing.assert_close(w[:, 0, 1], torch.tensor([0.0, 1 / 1.5, 0.5 / 1.5]))  # overlap beyond 1: scaled
    torch.testing.assert_close(w[:, 0, 2], torch.tensor([0.5, 0.0, 0.5]))  # half strength: half background
    torch.testing.assert_close(w[:, 3, 3], torch.tensor([0.875, 0.0, 0.125]))  # soft mask value
    assert torch.equal(prompt_weights(torch.zeros(1, 2, 2), [1.0])[0], torch.ones(2, 2))  # background exactly 1


def test_guide_per_call(model: LoadedModel) -> None:
    bg, region = (PromptText(_text(model, s), _text(model, s + 10)) for s in (1, 2))
    masks = torch.zeros(1, 64, 128)
    masks[0, :, :64] = 1.0  # left half of an 8x16 latent canvas
    guide = RegionGuide.build(bg, [region], masks, [1.0], _levels(model), model.family.xl)
    assert guide is not None and guide.coverage() == [0.5, 0.5]
    kw = _kwargs(model, bg.cond, 2)
    # A tile inside the region: the plain call with the region's text (both branches), no payload.
    inside = guide.apply(kw, 1, 2, [Rect(0, 0, 8, 8)])
    assert "cross_attention_kwargs" not in inside
    want = torch.cat([region.uncond.embeds, region.cond.embeds])
    assert torch.equal(inside["encoder_hidden_states"], want)
    # A tile the region does not touch: the call's kwargs as they are.
    assert guide.apply(kw, 1, 2, [Rect(8, 0, 8, 8)]) is kw
    # Straddling: every level's weights, both prompts' texts; SDXL pooled = the mix by area.
    both = guide.apply(kw, 1, 2, [Rect(4, 0, 8, 8)])
    payload = both["cross_attention_kwargs"]["regions"]
    assert sorted(payload["weight"], key=int) == sorted(str(a * b) for a, b in grids(8, 8, _levels(model)))
    top = payload["weight"]["64"]
    assert top.shape == (2, 64, 2) and torch.equal(top[0, :, 1].reshape(8, 8)[:, :4], torch.ones(8, 4))
    if model.family.xl:
        mix = 0.5 * bg.cond.pooled + 0.5 * region.cond.pooled  # type: ignore[operator]
        torch.testing.assert_close(both["added_cond_kwargs"]["text_embeds"][1:], mix)
    # A region covering nothing: no guide (the job runs exactly as without regions).
    assert RegionGuide.build(bg, [region], torch.zeros(1, 64, 128), [1.0], 2, model.family.xl) is None


def test_grids_of_odd_sizes() -> None:
    assert grids(9, 13, 4) == [(9, 13), (5, 7), (3, 4), (2, 2)]


def test_weights_must_match_texts(tmp_path: Path) -> None:
    text = PromptText(Conditioning(torch.zeros(1, 77, 8), None), Conditioning(torch.zeros(1, 77, 8), None))
    with pytest.raises(ValueError, match="2 prompts but 3 weight maps"):
        RegionGuide([text, text], torch.zeros(3, 2, 2), 2, False)


def test_fused_tiles_see_only_the_masks_under_them(model: LoadedModel) -> None:
    """One fused tiled model call over a 4x1-tile canvas with a region on the first tile's columns:
    changing that region's text changes the output only where tiles touching the region reach."""
    from server.pipelines import denoise, tiled
    from tiling.plan import plan_tiles

    bg, left, left2, right = (PromptText(_text(model, s), _text(model, s + 10)) for s in (1, 2, 3, 4))
    masks = torch.zeros(2, 64, 256)
    masks[0, :, :48] = 1.0  # latent columns 0-5
    masks[1, :, 208:] = 1.0
    plan = plan_tiles(32, 8, 8, 2)
    x = torch.randn(1, 4, 8, 32, generator=torch.Generator().manual_seed(5))
    regionattn.install(model)
    try:
        outs = []
        for region in (left, left2):
            guide = RegionGuide.build(bg, [region, right], masks, [1.0, 1.0], _levels(model), model.family.xl)
            g = denoise.Guidance(model, bg.cond, bg.uncond, 5.0, 256, 64, regions=guide)
            with torch.no_grad():
                outs.append(tiled.model_fn(g, plan, batch=2)(x, torch.tensor(300.0)))
    finally:
        model.undo_job_changes()
    reach = max(t.right for t in plan.tiles if t.x < 6)  # tiles touching the region's columns
    changed = (outs[0] != outs[1]).flatten(0, 2).any(0)
    assert reach <= 16 and changed[:6].all() and not changed[reach:].any()
