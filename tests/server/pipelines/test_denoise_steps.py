"""The sampler schedule runs exactly the steps the one step rule (`tiling.steps.steps_run`) counts."""

from __future__ import annotations

import pytest
import torch

from server.models.arch import REAL
from server.pipelines.denoise import timesteps_for
from server.samplers import Sampler, SamplerLike, make_scheduler
from tiling.steps import steps_run

CPU = torch.device("cpu")


SAMPLERS: list[SamplerLike] = ["Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "UniPC", "LCM", "TCD"]
SAMPLERS += [Sampler("Euler", "SGM Uniform"), Sampler("DPM++ 2M", "Exponential"), Sampler("DDIM", "Uniform")]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=str)
def test_timesteps_for_keeps_steps_run(sampler: SamplerLike) -> None:
    sched = make_scheduler(sampler, REAL["sd15"].configs["scheduler"])
    assert len(timesteps_for(sched, 20, 0.38, CPU)) == steps_run(20, 0.38) == 8
    for steps in (1, 2, 7, 20, 33, 50):
        for strength in (0.01, 0.1, 0.25, 0.38, 0.5, 0.55, 0.75, 0.9, 1.0):
            ts = timesteps_for(sched, steps, strength, CPU)
            assert len(ts) == steps_run(steps, strength) * sched.order, (steps, strength)
