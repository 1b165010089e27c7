"""Live frames through a real server: at most one pending frame per client (a newer one supersedes it),
a running frame older than `limits.live_interrupt_ms` interrupted at its next step, no backlog from
a burst, unchanged frames answered from the last result, and live and normal jobs of different
clients taking turns (no starvation either way)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage import data

from server.client import Client, ServerError
from server.embedded import RunningServer
from server.limits import Limits
from tests.conftest import connect, run
from tests.servers import in_process

S = 64
PHOTO = np.dstack([data.astronaut()[::8, ::8][:S, :S], np.full((S, S), 255, np.uint8)])
LIVE = {"prompt": "a portrait", "model": "tiny-sd15", "seed": 3, "steps": 8, "sampler": "LCM", "cfg": 1.0}
LIVE |= {"strength": 0.5, "result_format": "rgba8"}
LONG = LIVE | {"steps": 60, "sampler": "Euler", "strength": 1.0, "width": 128, "height": 128}  # runs a while


def canvas(dab: int = 0) -> dict[str, Any]:
    """The photo with `dab` brush dabs painted in (each one changes the frame's input)."""
    px = PHOTO.copy()
    for i in range(dab):
        px[4 * i : 4 * i + 4, 10:20] = [255, 40 * i % 256, 0, 255]
    return {"format": "rgba8", "w": S, "h": S, "data": px.tobytes()}


async def frame(c: Client, params: dict = LIVE, dab: int = 0) -> str:
    return await c.submit("generate", params, {"init": canvas(dab)}, live=True)


async def until(c: Client, jid: str, kind: str) -> list[dict[str, Any]]:
    """The job's events up to the first of type `kind` (or its end)."""
    seen = []
    async for ev in c.events(jid):
        seen.append(ev)
        if ev["type"] == kind:
            break
    return seen


async def ending(c: Client, jid: str) -> list[dict[str, Any]]:
    return [ev async for ev in c.events(jid)]


@pytest.fixture(scope="module")
def patient(models_dir: Path) -> Iterator[RunningServer]:
    """Running frames are never interrupted (an age no frame reaches)."""
    with in_process(models_dir, Limits(live_interrupt_ms=10**9)) as running:
        yield running


@pytest.fixture(scope="module")
def eager(models_dir: Path) -> Iterator[RunningServer]:
    """Any newer frame interrupts the running one."""
    with in_process(models_dir, Limits(live_interrupt_ms=0)) as running:
        yield running


def test_a_newer_frame_supersedes_the_pending_one(patient) -> None:
    async def go() -> tuple[list, list, str, list]:
        async with await connect(patient.url) as c:
            a = await frame(c, LONG)
            await until(c, a, "started")
            b = await frame(c, dab=1)
            newest = await frame(c, dab=2)
            return await ending(c, a), await ending(c, b), newest, await ending(c, newest)

    a, b, newest, c = run(go())
    assert a[-1]["type"] == "result"  # younger than the age: it finishes
    assert [ev["type"] for ev in b] == ["queued", "superseded"] and b[-1]["by"] == newest
    assert c[-1]["type"] == "result"


def test_a_running_frame_older_than_the_age_stops_at_the_next_step(eager) -> None:
    async def go() -> tuple[list, list, str]:
        async with await connect(eager.url) as c:
            a = await frame(c, LONG)
            seen = await until(c, a, "progress")
            b = await frame(c, dab=1)
            return seen + await ending(c, a), await ending(c, b), b

    a, b, b_id = run(go())
    assert a[-1]["type"] == "superseded" and a[-1]["by"] == b_id
    steps = [ev for ev in a if ev["type"] == "progress"]
    assert steps and steps[-1]["step"] < steps[-1]["total"]  # stopped part-way
    assert b[-1]["type"] == "result"


def test_a_burst_of_frames_leaves_no_backlog(patient) -> None:
    """50 frames while another client's job holds the worker: one runs, 49 are superseded at once."""

    async def go() -> tuple[list[list], int]:
        other, painter = await connect(patient.url), await connect(patient.url)
        blocker = await other.submit("generate", LONG | {"prompt": "blocker"})
        await until(other, blocker, "started")
        ids = [await frame(painter, dab=i % 16) for i in range(50)]
        superseded = [await ending(painter, jid) for jid in ids[:-1]]
        await other.cancel(blocker)
        await ending(other, blocker)
        last = await ending(painter, ids[-1])
        await other.close()
        await painter.close()
        return [*superseded, last], sum(ev["type"] == "started" for evs in [*superseded, last] for ev in evs)

    ends, started = run(go())
    assert [evs[-1]["type"] for evs in ends] == ["superseded"] * 49 + ["result"]
    assert started == 1


def test_an_unchanged_frame_reuses_the_last_result(patient) -> None:
    async def go() -> tuple[list, list, list, list]:
        async with await connect(patient.url) as c:
            first = await ending(c, await frame(c, dab=3))
            same = await ending(c, await frame(c, dab=3))
            changed = await ending(c, await frame(c, dab=4))
            random_seed = await ending(c, await frame(c, LIVE | {"seed": -1}, dab=4))
            return first, same, changed, random_seed

    first, same, changed, random_seed = run(go())
    px = [np.frombuffer(evs[-1]["images"][0]["data"], np.uint8) for evs in (first, same)]
    assert np.array_equal(*px)
    assert same[-1]["params"]["reused"] is True and "started" not in [ev["type"] for ev in same]
    assert "reused" not in first[-1]["params"]
    assert "started" in [ev["type"] for ev in changed] and "started" in [ev["type"] for ev in random_seed]


def test_live_and_normal_jobs_of_two_clients_take_turns(patient) -> None:
    """A painter who always has a frame waiting, and a client with three queued jobs: each side
    gets the worker in turn, so neither waits for the other to run out of work."""

    async def go() -> list[str]:
        order: list[str] = []
        normal, painter = await connect(patient.url), await connect(patient.url)
        # The painter's first frame goes first: were a normal job to start (and end) before any frame
        # was waiting, the next normal job would rightly follow it with no frame between.
        first = await frame(painter, dab=0)
        jobs = [
            await normal.submit("generate", LIVE | {"steps": 20, "prompt": f"n{i}"}, {"init": canvas()})
            for i in range(3)
        ]

        async def watch_normal(jid: str, name: str) -> None:
            async for ev in normal.events(jid):
                if ev["type"] == "started":
                    order.append(name)

        async def paint() -> None:
            dab, jid = 0, first
            while True:  # a new frame as soon as the last one starts: one is always pending
                evs = await until(painter, jid, "started")
                if evs[-1]["type"] == "started":
                    order.append("L")
                dab += 1
                nxt = await frame(painter, dab=dab % 16)
                await ending(painter, jid)
                jid = nxt
                if sum(name.startswith("n") for name in order) == 3 or dab > 12:
                    await ending(painter, jid)
                    return

        await asyncio.gather(paint(), *(watch_normal(j, f"n{i}") for i, j in enumerate(jobs)))
        await normal.close()
        await painter.close()
        return order

    order = run(go())
    normal_at = [i for i, name in enumerate(order) if name.startswith("n")]
    assert len(normal_at) == 3, order  # the painter did not starve them
    for a, b in zip(normal_at, normal_at[1:], strict=False):
        assert "L" in order[a:b], order  # nor they the painter


@pytest.mark.parametrize(
    ("kind", "images"),
    [("generate", {}), ("upscale", {"image": canvas()}), ("echo", {"image": canvas()})],
)
def test_only_img2img_and_inpaint_frames_can_be_live(server, kind: str, images: dict) -> None:
    async def go() -> None:
        async with await connect(server.url) as c:
            await c.run(kind, {"prompt": "x", "model": "tiny-sd15"}, images, live=True)

    with pytest.raises(ServerError) as err:
        run(go())
    assert err.value.code == "bad_field" and "live" in str(err.value)
