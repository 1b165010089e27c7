"""Few-step samplers and schedule types: our own loop against diffusers' own pipelines, bit for bit.

The diffusers side builds its scheduler straight from diffusers (`LCMScheduler`, `TCDScheduler`,
`EulerDiscreteScheduler(timestep_spacing="trailing")`, …) on the model's scheduler config, so these
tests check both the name/schedule table and the loop (timesteps, img2img start, per-step noise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import pytest
import torch

from server.models import reference
from server.models.loader import LoadedModel
from server.models.registry import ModelManager
from server.pipelines import denoise
from server.prompt import encode_pair
from server.samplers import Sampler

SEED = 11
# (our sampler, diffusers scheduler class, its config overrides, extra pipeline kwargs)
CASES: list[tuple[Sampler, str, dict[str, Any], dict[str, Any]]] = [
    (Sampler("LCM"), "LCMScheduler", {}, {}),
    (Sampler("TCD"), "TCDScheduler", {}, {"eta": 0.3}),  # TCD's gamma: diffusers' default, ours
    (Sampler("Euler", "SGM Uniform"), "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, {}),
    (
        Sampler("DDIM", "Trailing"),
        "DDIMScheduler",
        {"timestep_spacing": "trailing", "set_alpha_to_one": False, "clip_sample": False},
        {},
    ),
    (Sampler("DPM++ 2M", "Karras"), "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, {}),
    (Sampler("Euler a", "Uniform"), "EulerAncestralDiscreteScheduler", {"timestep_spacing": "linspace"}, {}),
    (Sampler("UniPC", "Exponential"), "UniPCMultistepScheduler", {"use_exponential_sigmas": True}, {}),
]


@pytest.fixture(scope="module")
def manager(models_dir: Path) -> ModelManager:
    return ModelManager(models_dir, torch.device("cpu"), torch.float32)


def _scheduler(model: LoadedModel, cls_name: str, overrides: dict[str, Any]) -> Any:
    return getattr(diffusers, cls_name).from_config(model.scheduler_config, **overrides)  # as diffusers' docs do


def _embeds(model: LoadedModel, cfg: float, w: int, h: int) -> tuple[denoise.Guidance, dict[str, Any]]:
    cond, uncond = encode_pair(model, "a red cat on a sofa", "blurry", 1)
    return denoise.Guidance(model, cond, uncond, cfg, w, h), reference.prompt_kwargs(cond, uncond)


def _theirs(pipe: Any, steps: int, cfg: float, **kw: Any) -> torch.Tensor:
    """The pipeline's latents, its generator seeded afresh as ours."""
    gen = torch.Generator("cpu").manual_seed(SEED)
    return pipe(**kw, num_inference_steps=steps, guidance_scale=cfg, generator=gen, output_type="latent").images


@pytest.mark.parametrize(("sampler", "cls_name", "overrides", "extra"), CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("name", ["tiny-sd15", "tiny-sdxl"])
def test_txt2img_matches_the_diffusers_pipeline(
    manager: ModelManager, name: str, sampler: Sampler, cls_name: str, overrides: dict[str, Any], extra: dict[str, Any]
) -> None:
    model = manager.get(name)
    w, h, steps, cfg = 64, 48, 4, 1.5
    guidance, kw = _embeds(model, cfg, w, h)
    noise = torch.randn(1, 4, h // 8, w // 8, generator=torch.Generator("cpu").manual_seed(SEED))
    # The pipeline is handed the noise, so its generator (seeded afresh) draws only the per-step noise.
    spec = denoise.Run(sampler, steps, noise, [torch.Generator("cpu").manual_seed(SEED)])
    ours = denoise.sample(model, guidance.model_fn(), spec)
    pipe = reference.assemble(model, _scheduler(model, cls_name, overrides))
    assert torch.equal(ours, _theirs(pipe, steps, cfg, **kw, **extra, height=h, width=w, latents=noise.clone()))


@pytest.mark.parametrize(("sampler", "cls_name", "overrides", "extra"), CASES[:3], ids=lambda c: str(c))
def test_img2img_matches_the_diffusers_pipeline(
    manager: ModelManager, sampler: Sampler, cls_name: str, overrides: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Strength 0.5 of 8 steps: both run the last 4 of the 8-step schedule from the same noised start."""
    model = manager.get("tiny-sd15")
    w, h, steps, cfg, strength = 64, 64, 8, 1.0, 0.5
    guidance, kw = _embeds(model, cfg, w, h)
    init = torch.randn(1, 4, h // 8, w // 8, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator("cpu").manual_seed(SEED)
    noise = torch.randn(init.shape, generator=gen)  # the pipeline draws its noise first, then step noise
    ours = denoise.sample(model, guidance.model_fn(), denoise.Run(sampler, steps, noise, [gen], init, strength))
    pipe = reference.assemble(model, _scheduler(model, cls_name, overrides), "Img2Img")
    # the init has 4 channels: taken as latents, not encoded
    assert torch.equal(ours, _theirs(pipe, steps, cfg, **kw, **extra, image=init.clone(), strength=strength))
