"""The baseline of `bench/gpu.py`: plain diffusers, eager, on the very modules our server loaded.

A `StableDiffusionPipeline` / `StableDiffusionXLPipeline` is assembled from a `LoadedModel`'s UNet,
VAE, text encoders and tokenizers with the Euler scheduler of the same config, and given what our
`generate` gives its loop: the same starting noise (`denoise.seeded([seed + i ...])`), the same generators and
the same prompt embeddings (from our encoder, so both sides sample the same conditioning; diffusers is
then timed without its text encoding, which favours it by a few milliseconds).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from server.imaging.tensors import to_pixels
from server.models import reference
from server.models.loader import LoadedModel
from server.pipelines.denoise import seeded
from server.prompt import encode_pair


def pipeline(model: LoadedModel) -> Any:
    import diffusers

    sched = diffusers.EulerDiscreteScheduler.from_config(model.scheduler_config)
    vae = None
    if model.vae_dtype != model.dtype:
        # Our SDXL VAE stays fp32; diffusers users load it in fp16 and the pipeline upcasts it around
        # every decode (and casts it back after): give it its own copy to do that with.
        vae = copy.deepcopy(model.vae).to(model.dtype)
    return reference.assemble(model, sched, vae=vae)


class Baseline:
    """Generate with diffusers as our `generate` job would, for `prompt` / `negative` on `model`."""

    def __init__(self, model: LoadedModel, prompt: str, negative: str) -> None:
        self.model, self.pipe = model, pipeline(model)
        cond, uncond = encode_pair(model, prompt, negative)
        self.embeds = {k: v.to(model.device, model.dtype) for k, v in reference.prompt_kwargs(cond, uncond).items()}

    def generate(self, seed: int, batch: int, px: int, steps: int, cfg: float) -> list[np.ndarray]:
        n = batch
        latents, gens = seeded([seed + i for i in range(n)], (1, 4, px // 8, px // 8))
        out = self.pipe(
            num_inference_steps=steps,
            guidance_scale=cfg,
            num_images_per_prompt=n,
            latents=latents.to(self.model.device, self.model.dtype),  # as diffusers users pass them (fp16 on CUDA)
            generator=gens,  # one per image, continuing after the starting noise as in our loop
            width=px,
            height=px,
            output_type="pt",
            **self.embeds,
        )
        return [to_pixels(img, signed=False) for img in out.images]

    def close(self) -> None:
        """Drop the pipeline's references, so the next model can take the memory."""
        del self.pipe
