"""Conditioning hooks (server/pipelines/control.py) on their own: the step-range rule, per-tile control
crops, residuals adding up, IP-Adapter embeddings per batch and branch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from server.imaging import control as cimg
from server.models import controlnet
from server.models.testmodels import ARCHS
from server.pipelines.control import ControlNetHook, UNetCall, apply_hooks, control_tensor, in_range
from tiling.geometry import Rect

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    root = tmp_path_factory.mktemp("cn")
    ARCHS["controlnet-sd15"](root / "ControlNet", None, 0)
    entry = controlnet.discover_controlnets(root)["tiny-control_v11p_sd15_canny"]
    return controlnet.load_controlnet(entry, CPU, torch.float32, False)


def test_range_rule_is_diffusers_controlnet_keep() -> None:
    for steps in (1, 4, 7, 20):
        for start, end in ((0.0, 1.0), (0.0, 0.5), (0.25, 0.75), (0.5, 1.0), (0.3, 0.3)):
            keep = [1.0 - float(i / steps < start or (i + 1) / steps > end) for i in range(steps)]
            assert [float(in_range(i, steps, start, end)) for i in range(steps)] == keep


def _call(x: torch.Tensor, rects: list[Rect] | None, step: int = 0, steps: int = 4) -> UNetCall:
    hidden = torch.randn(x.shape[0], 77, 32, generator=torch.Generator().manual_seed(1))
    return UNetCall(x, torch.tensor(500), {"encoder_hidden_states": hidden}, 2, rects, step, steps)


def test_a_tile_gets_the_control_under_it(net: torch.nn.Module) -> None:
    photo = np.ascontiguousarray(data.camera()[::8, ::8][:48, :64])
    image = control_tensor(cimg.canny(np.dstack([photo] * 3), 50, 150))  # 64x48 px, 8x6 latent
    hook = ControlNetHook(net, image, 1.0, 0.0, 1.0)
    gen = torch.Generator().manual_seed(0)
    tiles = [Rect(0, 0, 4, 4), Rect(4, 2, 4, 4)]
    x = torch.randn(4, 4, 4, 4, generator=gen)  # 2 tiles x 2 CFG branches
    call = _call(x, tiles)
    got = apply_hooks([hook], call)
    crops = torch.cat([image[..., 0:32, 0:32], image[..., 16:48, 32:64]])
    down, mid = net(x, call.t, encoder_hidden_states=call.kwargs["encoder_hidden_states"],
                    controlnet_cond=torch.cat([crops, crops]), return_dict=False)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(got["down_block_additional_residuals"], down, strict=True))
    assert torch.equal(got["mid_block_additional_residual"], mid)
    # The whole canvas as one "tile" is the same as no rectangles at all.
    xs = torch.randn(2, 4, 6, 8, generator=gen)
    whole = apply_hooks([hook], _call(xs, None))["mid_block_additional_residual"]
    assert torch.equal(whole, apply_hooks([hook], _call(xs, [Rect(0, 0, 8, 6)]))["mid_block_additional_residual"])


def test_residuals_add_up_and_idle_hooks_add_nothing(net: torch.nn.Module) -> None:
    image = control_tensor(np.random.default_rng(0).random((48, 64, 3), dtype=np.float32))
    x = torch.randn(2, 4, 6, 8, generator=torch.Generator().manual_seed(3))
    a, b = ControlNetHook(net, image, 1.0, 0.0, 1.0), ControlNetHook(net, image * 0.5, 0.7, 0.0, 1.0)
    both = apply_hooks([a, b], _call(x, None))
    one, two = apply_hooks([a], _call(x, None)), apply_hooks([b], _call(x, None))
    mid, down = "mid_block_additional_residual", "down_block_additional_residuals"
    assert torch.equal(both[mid], one[mid] + two[mid])
    assert all(torch.equal(c, a + b) for a, b, c in zip(one[down], two[down], both[down], strict=True))
    # Strength 0 or outside its range: the hook does not run and the UNet gets its plain kwargs.
    for idle in (ControlNetHook(net, image, 0.0, 0.0, 1.0), ControlNetHook(net, image, 1.0, 0.5, 1.0)):
        assert set(apply_hooks([idle], _call(x, None, step=0))) == {"encoder_hidden_states"}
    assert "mid_block_additional_residual" in apply_hooks(
        [ControlNetHook(net, image, 1.0, 0.5, 1.0)], _call(x, None, 3)
    )


def test_control_image_must_cover_the_latents(net: torch.nn.Module) -> None:
    hook = ControlNetHook(net, torch.zeros(1, 3, 40, 40), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="does not cover"):
        apply_hooks([hook], _call(torch.zeros(2, 4, 6, 8), None))


def test_ip_adapter_embeds_per_branch_and_item(tmp_path: Path) -> None:
    from server.models.controls import ControlModels
    from server.pipelines.control import IPAdapterHook, Reference, reference_embeds

    ARCHS["clip-vision"](tmp_path / "clip_vision", None, 0)
    ARCHS["ipadapter-sd15"](tmp_path / "ipadapter", None, 0)
    _entry, _state, vision = ControlModels(tmp_path, CPU, torch.float32).ipadapter("tiny-ip-adapter_sd15")
    emb = reference_embeds(vision, data.chelsea(), hidden_states=False, cfg=True)
    assert emb.shape == (2, 1, 16) and (emb[0] == 0).all() and emb[1].abs().sum() > 0
    hidden = reference_embeds(vision, data.chelsea(), hidden_states=True, cfg=False)
    assert hidden.shape == (1, 1, 17, 32)  # 16 patches + the class token, width 32

    class Unet:  # records the scales set on it
        def __init__(self) -> None:
            self.attn_processors = {"a": type("P", (), {"to_k_ip": None, "scale": None})()}

    unet = Unet()
    hook = IPAdapterHook(unet, [Reference(emb, 0.6, 0.0, 0.5)])
    kw = apply_hooks([hook], _call(torch.zeros(6, 4, 4, 4), None, step=0))  # 3 items per branch
    (got,) = kw["added_cond_kwargs"]["image_embeds"]
    assert got.shape == (6, 1, 16) and (got[:3] == 0).all() and torch.equal(got[3:], emb[1:].expand(3, 1, 16))
    assert unet.attn_processors["a"].scale == [0.6]
    apply_hooks([hook], _call(torch.zeros(6, 4, 4, 4), None, step=3))
    assert unet.attn_processors["a"].scale == [0.0]  # outside its range
