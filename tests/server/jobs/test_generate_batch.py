"""A `generate` batch is sampled together (one UNet call per step for all its images), and image i of
a batch of N is pixel-identical to a batch-1 job with seed + i: txt2img, img2img, an ancestral
sampler, a 9-channel inpainting model (its conditioning image shared by the batch), a large canvas
through the fused tiler, and (on the A1111 tree) hires fix and the SDXL refiner hand-off."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import RunningServer
from tests.server.jobs.edit_helpers import job, photo, pixels, rgba8

BASE = {"prompt": "a lighthouse at dusk", "negative": "fog", "steps": 3, "cfg": 5.0, "result_format": "rgba8"}
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "txt2img sd15 Euler a": ({"model": "tiny-sd15", "sampler": "Euler a", "width": 64, "height": 48}, {}),
    "txt2img sdxl DPM++ 2M": ({"model": "tiny-sdxl", "sampler": "DPM++ 2M", "width": 64, "height": 64}, {}),
    "img2img sd15 Euler a": (
        {"model": "tiny-sd15", "sampler": "Euler a", "strength": 0.6},
        {"init": rgba8(photo("astronaut", 64, 64))},
    ),
    "inpainting model": ({"model": "tiny-sd15-inpaint", "sampler": "Euler", "width": 64, "height": 64}, {}),
    "fused tiler": ({"model": "tiny-sd15", "sampler": "Euler a", "width": 192, "height": 136}, {}),
}


def images_of(url: str, params: dict[str, Any], images: dict[str, Any]) -> list[np.ndarray]:
    return [pixels(r) for r in job(url, "generate", params, images)["images"]]


def assert_batch_is_single_jobs(url: str, params: dict[str, Any], images: dict[str, Any], batch: int = 3) -> None:
    together = images_of(url, params | {"seed": 70, "batch": batch}, images)
    assert len(together) == batch and len({im.tobytes() for im in together}) == batch
    for i, im in enumerate(together):
        alone = images_of(url, params | {"seed": 70 + i}, images)
        assert np.array_equal(im, alone[0]), f"image {i} of the batch differs from seed {70 + i} alone"


@pytest.mark.parametrize("case", CASES)
def test_image_i_of_a_batch_is_the_single_job_with_seed_plus_i(server: RunningServer, case: str) -> None:
    params, images = CASES[case]
    assert_batch_is_single_jobs(server.url, BASE | params, images)


def test_batched_hires_fix_and_refiner_match_single_jobs(a1111_server: RunningServer) -> None:
    hires = {"model": "tiny-sd15", "width": 64, "height": 48, "hires": {"scale": 1.5, "steps": 2, "strength": 0.6}}
    assert_batch_is_single_jobs(a1111_server.url, BASE | hires, {}, batch=2)
    refiner = {"model": "tiny-sdxl", "width": 64, "height": 64, "refiner": "tiny-sdxl-refiner", "refiner_switch": 0.5}
    assert_batch_is_single_jobs(a1111_server.url, BASE | refiner | {"sampler": "Euler a"}, {}, batch=2)
