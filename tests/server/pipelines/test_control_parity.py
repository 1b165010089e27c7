"""Parity: `generate` with a ControlNet, through the real server, gives the very pixels diffusers'
StableDiffusionControlNetPipeline / StableDiffusionXLControlNetPipeline make from the same files,
prompt, seed and control image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from server.imaging import control as cimg
from server.imaging.tensors import to_pixels
from server.models import controlnet, loader, reference
from tests.server.jobs.edit_helpers import photo, pixels, png
from tests.server.jobs.test_controls_parse import CANNY, XL_CANNY, submit

CPU = torch.device("cpu")
PROMPT, NEGATIVE, SEED, STEPS, CFG = "a photo of an astronaut", "blurry", 42, 4, 7.0


def _reference(tree: Path, family: str, control: np.ndarray, **kw: Any) -> np.ndarray:
    """diffusers' own ControlNet pipeline on the same checkpoint and ControlNet files."""
    import diffusers

    m = loader.load_single_file(
        tree / "Stable-diffusion" / f"tiny-{family}.safetensors", "m", CPU, torch.float32, False
    )
    name = CANNY if family == "sd15" else XL_CANNY
    net = controlnet.load_controlnet(controlnet.discover_controlnets(tree)[name], CPU, torch.float32, False)
    sched = diffusers.EulerDiscreteScheduler.from_config(m.scheduler_config)
    pipe = reference.assemble(m, sched, "ControlNet", controlnet=net)
    h, w = control.shape[:2]
    out = pipe(
        PROMPT,
        image=Image.fromarray(control),
        negative_prompt=NEGATIVE,
        num_inference_steps=STEPS,
        guidance_scale=CFG,
        width=w,
        height=h,
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="pt",
        **kw,
    ).images
    return to_pixels(out[0], signed=False)


@pytest.mark.parametrize(
    ("family", "size", "strength", "start", "end"),
    [("sd15", (64, 48), 1.0, 0.0, 1.0), ("sd15", (64, 48), 0.7, 0.25, 0.75), ("sdxl", (128, 96), 1.0, 0.0, 1.0)],
)
def test_generate_with_a_controlnet_equals_diffusers(
    control_server, control_tree: Path, family: str, size: tuple[int, int], strength: float, start: float, end: float
) -> None:
    w, h = size
    edges = cimg.to_display(cimg.canny(photo("astronaut", w, h), 100, 200))
    control = {"model": CANNY if family == "sd15" else XL_CANNY, "image": "edges", "strength": strength}
    params = {"prompt": PROMPT, "negative": NEGATIVE, "model": f"tiny-{family}", "seed": SEED, "steps": STEPS,
              "cfg": CFG, "sampler": "Euler", "width": w, "height": h,
              "controls": [control | {"start": start, "end": end}]}  # fmt: skip
    ours = pixels(submit(control_server.url, "generate", params, {"edges": png(edges)})["images"][0])[..., :3]
    ref = _reference(control_tree, family, edges, controlnet_conditioning_scale=strength,
                     control_guidance_start=start, control_guidance_end=end)  # fmt: skip
    assert np.array_equal(ours, ref)
    plain = pixels(submit(control_server.url, "generate", params | {"controls": []}, {})["images"][0])[..., :3]
    assert np.abs(ours.astype(int) - plain).mean() > 2  # and the control did change the picture
