"""The UNet fast path (`server.pipelines.fastpath`): what each `--fast` mode means on a device, how
calls are bucketed by input signature, that a bucketed (compiled) step equals the eager step, and that
a server on it returns the eager server's pixels. CUDA graphs themselves need a GPU: `bench/gpu.py`
checks them on one (fast vs eager pixel difference)."""

from __future__ import annotations

import subprocess
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from server.models import arch
from server.models.testnets import from_config
from server.pipelines.fastpath import FastOptions, UnetStep, describe, flatten, resolve, signature, unflatten
from tests.conftest import connect, run
from tests.servers import ROOT, SDBRIDGE, in_process

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def tiny_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return from_config(UNet2DConditionModel, arch.TINY["sd15"].configs["unet"]).eval().requires_grad_(False)


def inputs(h: int, w: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, h, w, generator=g)
    ctx = torch.randn(batch, 77, 32, generator=g)
    return x, torch.tensor(500.0 - seed), {"encoder_hidden_states": ctx}


def test_modes_per_device() -> None:
    assert resolve("auto", CPU) == "eager"  # CPU users and CI: no change at all
    assert resolve("off", CPU) == resolve("off", CUDA) == "eager"
    assert resolve("auto", CUDA) == "graphs"
    assert resolve("compile", CPU) == resolve("compile", CUDA) == "compile"
    assert resolve("graphs", CUDA) == "graphs"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve("graphs", CPU)
    with pytest.raises(ValueError, match="unknown fast mode 'turbo'"):
        resolve("turbo", CUDA)
    with pytest.raises(ValueError, match="resolved first"):
        UnetStep(torch.nn.Identity(), "auto")


def test_signature_keys_on_shapes_dtypes_devices_not_values() -> None:
    x, t, kw = inputs(8, 8)
    kw = kw | {"added_cond_kwargs": {"time_ids": torch.zeros(2, 6), "text_embeds": torch.ones(2, 32)}}
    leaves = flatten(x, t, kw)
    assert [p for p, _ in leaves] == [
        ("sample",),
        ("timestep",),
        ("added_cond_kwargs", "text_embeds"),
        ("added_cond_kwargs", "time_ids"),
        ("encoder_hidden_states",),
    ]
    x2, t2, kw2 = unflatten(leaves)
    assert x2 is x and t2 is t and kw2["added_cond_kwargs"]["time_ids"] is kw["added_cond_kwargs"]["time_ids"]
    key = signature(leaves)
    assert key is not None
    other_values = flatten(torch.randn(2, 4, 8, 8), torch.tensor(1.0), kw)
    assert signature(other_values) == key  # same bucket: values change every step
    assert signature(flatten(torch.randn(2, 4, 8, 16), t, kw)) != key
    assert signature(flatten(x.double(), t, kw)) != key
    assert signature(flatten(x, t, kw | {"encoder_hidden_states": torch.randn(2, 154, 32)})) != key  # long prompt
    assert signature(flatten(x, t, kw | {"return_dict": True})) != key
    assert signature(flatten(x, t, kw | {"cross_attention_kwargs": {"scale": object()}})) is None  # can't key: eager
    text = describe(key)
    assert "sample 2x4x8x8 float32" in text and "timestep scalar float32" in text
    assert "added_cond_kwargs.time_ids 2x6 float32" in text


def test_lists_of_tensors_are_keyed_element_by_element(tiny_unet: torch.nn.Module) -> None:
    """ControlNet residuals (a list per down block) and IP-Adapter embeddings (a list per adapter) take
    the fast path too: each element is a leaf, and the step equals the eager one."""
    x, t, kw = inputs(8, 8)
    g = torch.Generator().manual_seed(5)
    down = [torch.randn(2, c, s, s, generator=g) for c, s in ((32, 8), (32, 8), (32, 4), (64, 4), (64, 4))]
    kw |= {"down_block_additional_residuals": down, "mid_block_additional_residual": torch.randn(2, 64, 4, 4)}
    leaves = flatten(x, t, kw)
    assert ("down_block_additional_residuals", "[4]") in [p for p, _ in leaves]
    _x, _t, back = unflatten(leaves)
    assert all(a is b for a, b in zip(back["down_block_additional_residuals"], down, strict=True))
    key = signature(leaves)
    assert key is not None and "down_block_additional_residuals.[0] 2x32x8x8 float32" in describe(key)
    step = UnetStep(tiny_unet, "compile", FastOptions("compile", backend="eager"))
    for seed in (1, 2):  # the second call replays the bucket with new residual values
        res = [r * seed for r in down]
        kws = kw | {"down_block_additional_residuals": res}
        assert torch.equal(step(x, t, **kws), tiny_unet(x, t, **kws).sample)
    assert step.builds == 1
    # IP-Adapter calls stay eager: their processors are per job and read per-step scales as floats.
    ip = kw | {"added_cond_kwargs": {"image_embeds": [torch.zeros(2, 1, 16)]}}
    assert signature(flatten(x, t, ip)) is None


def test_eager_step_is_the_plain_module_call(tiny_unet: torch.nn.Module) -> None:
    x, t, kw = inputs(8, 8)
    step = UnetStep(tiny_unet)
    out = step(x, t, **kw)
    assert torch.equal(out, tiny_unet(x, t, **kw).sample)
    assert step.buckets == {} and step.builds == 0 and step.report() == []


def test_compiled_buckets_equal_eager_and_stay_bounded(tiny_unet: torch.nn.Module) -> None:
    # dynamo traces the real UNet per shape; the "eager" backend runs the traced graphs without codegen
    step = UnetStep(tiny_unet, "compile", FastOptions("compile", max_buckets=2, backend="eager"))
    shapes = [(8, 8), (8, 16), (8, 8), (16, 8), (8, 16)]
    for i, (h, w) in enumerate(shapes):
        x, t, kw = inputs(h, w, seed=i)
        assert torch.equal(step(x, t, **kw), tiny_unet(x, t, **kw).sample), (h, w)
    # two buckets built on first use and reused; the third shape found the set full and ran eager
    assert step.builds == 2
    report = step.report()
    assert [r["key"].split(",")[0] for r in report] == ["sample 2x4x8x8 float32", "sample 2x4x8x16 float32"]
    assert [r["uses"] for r in report] == [2, 2] and all(r["kind"] == "compiled" for r in report)
    assert all(r["seconds"] > 0 for r in report)


def test_moved_weights_drop_the_buckets(tiny_unet: torch.nn.Module) -> None:
    unet = from_config(type(tiny_unet), arch.TINY["sd15"].configs["unet"]).eval().requires_grad_(False)
    unet.load_state_dict(tiny_unet.state_dict())
    step = UnetStep(unet, "compile", FastOptions("compile", backend="eager"))
    x, t, kw = inputs(8, 8)
    step(x, t, **kw)
    assert step.builds == 1
    with torch.no_grad():  # patched in place (how LoRAs are applied): same memory, the bucket stays valid
        next(unet.parameters()).mul_(1.0)
    step(x, t, **kw)
    assert step.builds == 1
    unet.double().float()  # new storage for every weight: a captured graph would read freed memory
    assert torch.equal(step(x, t, **kw), unet(x, t, **kw).sample)
    assert step.builds == 2 and len(step.buckets) == 1


@pytest.mark.slow
def test_inductor_compiled_step_matches_eager(tiny_unet: torch.nn.Module) -> None:
    step = UnetStep(tiny_unet, "compile", FastOptions("compile"))  # the real `--fast compile` backend
    x, t, kw = inputs(8, 8, seed=3)
    out, ref = step(x, t, **kw), tiny_unet(x, t, **kw).sample
    assert step.builds == 1
    # generated kernels may order float sums differently than eager: rounding-level differences only
    assert torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref) < 1e-5


def _generate(url: str, params: dict) -> np.ndarray:
    async def go() -> dict:
        async with await connect(url) as c:
            return await c.run("generate", params)

    rect = run(go())["images"][0]
    return np.frombuffer(rect["data"], np.uint8).reshape(rect["h"], rect["w"], 4)


def test_server_on_the_fast_path_returns_the_eager_pixels(models_dir: Path, server) -> None:
    params = {"prompt": "a red cat", "model": "tiny-sd15", "seed": 7, "steps": 3, "width": 64, "height": 64}
    params |= {"sampler": "Euler", "result_format": "rgba8"}
    eager = _generate(server.url, params)
    with in_process(models_dir, fast=FastOptions("compile", backend="eager")) as fast:
        assert np.array_equal(_generate(fast.url, params), eager)
        model = fast.server.models.get("tiny-sd15")  # resident: no reload
        step = model.extras["unet_step"]
        assert step.mode == "compile" and step.builds == 1  # one bucket: CFG batch 2 at 8x8 latents
        assert step.report()[0]["uses"] == 3


def test_serve_refuses_graphs_without_cuda(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*SDBRIDGE, "serve", "--models", str(tmp_path), "--device", "cpu", "--fast", "graphs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--fast graphs needs a CUDA device" in proc.stderr


def test_previews_are_made_only_when_sent(monkeypatch) -> None:
    from server.workers import runner

    sent: list[dict] = []
    ticks = iter([0.0, 0.1, 0.2, 0.3, 0.4])
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))
    made: list[int] = []

    def preview_at(step: int):  # noqa: ANN202 - the lazy preview a job hands over
        def make() -> np.ndarray:
            made.append(step)
            return np.full((8, 8, 3), step, np.uint8)

        return make

    progress = runner.progress_sender("p", ("webp",), sent.append)
    for step in range(1, 6):
        progress(step, 5, preview_at(step))
    assert made == [1, 4, 5] == [ev["step"] for ev in sent if "preview" in ev]
    assert all(sent[i - 1]["preview"]["data"][:4] == b"RIFF" for i in made)
