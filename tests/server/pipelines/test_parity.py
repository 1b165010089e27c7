"""Our sampling loop against diffusers' own pipelines, bit for bit, and the batch-invariant UNet.

- The loop (`denoise.start`/`run`, batched) gives exactly the latents of `StableDiffusionPipeline` /
  `StableDiffusionXLPipeline` run on the same components, embeddings, sampler and per-image
  generators, for a deterministic, a multistep and an ancestral sampler, batch 1 and 3.
- A batch of one through our loader's model is bit-identical to diffusers' pipeline as diffusers
  itself loads the file (`from_single_file`): the batch-invariant projections change no bit there.
- Image i of a batch is bit-identical to that image alone, however the batch is split into UNet
  calls, and a batch makes one UNet call of 2N per step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from server.models import reference
from server.models.loader import LoadedModel
from server.models.registry import ModelManager
from server.pipelines import denoise
from server.prompt import encode_pair
from server.samplers import make_scheduler

SIZE = 64  # px
SHAPE = (1, 4, SIZE // 8, SIZE // 8)
CFG = 6.0
STEPS = 3


@pytest.fixture(scope="module")
def manager(models_dir: Path) -> ModelManager:
    return ModelManager(models_dir, torch.device("cpu"), torch.float32)


def ours(model: LoadedModel, sampler: str, seeds: list[int], per_call: int | None = None) -> torch.Tensor:
    cond, uncond = encode_pair(model, "a red fox in the snow", "blurry", 1)
    fn = denoise.Guidance(model, cond, uncond, CFG, SIZE, SIZE).model_fn(per_call=per_call)
    return denoise.sample(model, fn, denoise.Run(sampler, STEPS, *denoise.seeded(seeds, SHAPE)))


def theirs(pipe, model: LoadedModel, sampler: str, seeds: list[int]) -> torch.Tensor:  # noqa: ANN001 - a pipeline
    pipe.scheduler = make_scheduler(sampler, model.scheduler_config)
    out = pipe(
        **reference.prompt_kwargs(*encode_pair(model, "a red fox in the snow", "blurry", 1)),
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        height=SIZE,
        width=SIZE,
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        output_type="latent",
    )
    return out.images


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M Karras", "Euler a"])
def test_loop_matches_the_diffusers_pipeline(manager: ModelManager, name: str, sampler: str) -> None:
    model = manager.get(name)
    pipe = reference.assemble(model, make_scheduler("Euler", model.scheduler_config))
    for seeds in ([11], [11, 12, 13]):
        assert torch.equal(ours(model, sampler, seeds), theirs(pipe, model, sampler, seeds)), seeds


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
def test_batch_of_one_matches_diffusers_own_load(manager: ModelManager, models_dir: Path, name: str) -> None:
    model = manager.get(name)
    stock = reference.from_single_file(models_dir / f"{name}.safetensors", torch.float32)
    assert type(stock.unet.time_embedding.linear_1) is torch.nn.Linear  # diffusers' modules, untouched
    assert torch.equal(ours(model, "Euler a", [5]), theirs(stock, model, "Euler a", [5]))


@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
def test_image_i_of_a_batch_is_that_image_alone(manager: ModelManager, name: str) -> None:
    model = manager.get(name)
    calls: list[int] = []
    hook = model.unet.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    try:
        batch = ours(model, "Euler a", [3, 4, 5, 6])
    finally:
        hook.remove()
    assert calls == [8] * STEPS  # one UNet call per step, both CFG branches of all four images
    for i, seed in enumerate([3, 4, 5, 6]):
        assert torch.equal(batch[i : i + 1], ours(model, "Euler a", [seed]))
    assert torch.equal(batch, ours(model, "Euler a", [3, 4, 5, 6], per_call=3))  # split 3 + 1: same bits
