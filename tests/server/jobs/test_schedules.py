"""Few-step samplers and schedule types through a real server: listed in `welcome`, validated before
queueing, reported in `params`, and a schedule type is the same as the legacy name that carries it."""

from __future__ import annotations

import numpy as np
import pytest

from server.client import ServerError
from server.samplers import SAMPLERS, SCHEDULE_KEYS, SCHEDULES, _accepts, schedules_for
from tests.conftest import connect, run
from tests.server.jobs.test_generate import generate, pixels

BASE = {"prompt": "a cat", "model": "tiny-sd15", "steps": 4, "width": 64, "height": 64, "seed": 5}


def test_welcome_lists_samplers_and_their_schedule_types(server) -> None:
    async def go() -> dict:
        async with await connect(server.url) as c:
            return c.welcome

    w = run(go())
    assert {"LCM", "TCD"} <= set(w["samplers"])
    assert w["schedules"][:5] == ["Automatic", "Uniform", "Karras", "Exponential", "SGM Uniform"]
    assert w["sampler_schedules"]["LCM"] == ["Automatic"] == w["sampler_schedules"]["TCD"]
    assert {"Karras", "SGM Uniform"} <= set(w["sampler_schedules"]["Euler"])
    assert "Karras" not in w["sampler_schedules"]["DDIM"]  # diffusers' DDIM has no Karras sigmas
    assert set(w["sampler_schedules"]) == set(w["samplers"])


def test_the_written_out_schedule_keys_are_what_diffusers_takes() -> None:
    keys = set().union(*SCHEDULES.values())
    assert {cls: SCHEDULE_KEYS[cls] for cls, _ in SAMPLERS.values()} == {
        cls: frozenset(keys & _accepts(cls)) for cls, _ in SAMPLERS.values()
    }


@pytest.mark.parametrize("sampler", ["LCM", "TCD"])
def test_few_step_samplers_run_and_are_reported(server, sampler: str) -> None:
    res = generate(server.url, BASE | {"sampler": sampler, "cfg": 1.0})
    assert (res["params"]["sampler"], res["params"]["schedule"]) == (sampler, "Automatic")
    assert pixels(res["images"][0]).std() > 1
    again = generate(server.url, BASE | {"sampler": sampler, "cfg": 1.0})  # stochastic steps, seeded
    assert np.array_equal(pixels(res["images"][0]), pixels(again["images"][0]))


def test_a_schedule_type_is_the_legacy_name_that_carries_it(server) -> None:
    legacy = pixels(generate(server.url, BASE | {"sampler": "DPM++ 2M Karras"})["images"][0])
    split = generate(server.url, BASE | {"sampler": "DPM++ 2M", "schedule": "Karras"})
    assert split["params"]["schedule"] == "Karras"
    assert np.array_equal(legacy, pixels(split["images"][0]))
    # an explicit type replaces the one in the name
    uniform = pixels(generate(server.url, BASE | {"sampler": "DPM++ 2M Karras", "schedule": "Uniform"})["images"][0])
    plain = pixels(generate(server.url, BASE | {"sampler": "DPM++ 2M", "schedule": "Uniform"})["images"][0])
    assert np.array_equal(uniform, plain) and not np.array_equal(uniform, legacy)


def test_schedule_types_change_the_picture(server) -> None:
    shown = {
        s: pixels(generate(server.url, BASE | {"sampler": "Euler", "schedule": s})["images"][0])
        for s in ("Automatic", "Karras", "SGM Uniform")
    }
    trailing = pixels(generate(server.url, BASE | {"sampler": "Euler", "schedule": "Trailing"})["images"][0])
    assert not np.array_equal(shown["Automatic"], shown["Karras"])
    assert not np.array_equal(shown["Automatic"], shown["SGM Uniform"])
    assert np.array_equal(shown["SGM Uniform"], trailing)  # the same schedule under diffusers' name


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"sampler": "LCM", "schedule": "Karras"}, "params.schedule", "LCM runs with Automatic"),
        ({"sampler": "DDIM", "schedule": "Exponential"}, "params.schedule", "not 'Exponential'"),
        ({"sampler": "Euler", "schedule": "Polyexponential"}, "params.schedule", "Polyexponential"),
        ({"sampler": "TCD", "steps": 60}, "params.steps", "at most 50"),
    ],
)
def test_bad_combinations_are_refused_before_queueing(server, params: dict, field: str, words: str) -> None:
    with pytest.raises(ServerError) as err:
        generate(server.url, BASE | params)
    assert err.value.code == "bad_field" and field in str(err.value) and words in str(err.value)


def test_every_advertised_combination_is_accepted() -> None:
    from server.samplers import NAMES, Sampler, check

    for name in NAMES:
        for schedule in schedules_for(name):
            assert check(Sampler(name, schedule), 20) is None, (name, schedule)
