"""Queue semantics: FIFO across clients, positions, cancel (queued and running), fetch after disconnect."""

from __future__ import annotations

import asyncio
import time
import types
import uuid

import numpy as np

from tests.conftest import connect, run
from tests.wire import Raw

SLOW = {"prompt": "slow", "model": "tiny-sd15", "steps": 60, "width": 128, "height": 128, "seed": 1}
FAST = {"prompt": "fast", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64, "seed": 1}


def test_fifo_across_two_clients_with_positions(server) -> None:
    async def go() -> tuple[list[tuple[str, str]], dict[str, list[int]]]:
        log: list[tuple[str, str]] = []
        positions: dict[str, list[int]] = {}
        a, b = await connect(server.url), await connect(server.url)
        a1 = await a.submit("generate", SLOW | {"steps": 15})
        await asyncio.sleep(0.05)
        b1 = await b.submit("generate", FAST)
        a2 = await a.submit("generate", FAST)
        names = {a1: "a1", b1: "b1", a2: "a2"}

        async def watch(client, jid):  # noqa: ANN001
            async for ev in client.events(jid):
                log.append((names[jid], ev["type"]))
                if ev["type"] == "queued":
                    positions.setdefault(names[jid], []).append(ev["position"])

        await asyncio.gather(watch(a, a1), watch(b, b1), watch(a, a2))
        await a.close()
        await b.close()
        return log, positions

    log, positions = run(go())
    starts = [name for name, t in log if t == "started"]
    assert starts == ["a1", "b1", "a2"]
    assert log.index(("a1", "result")) < log.index(("b1", "started"))
    assert positions["b1"][0] >= 1 and positions["a2"][0] == positions["b1"][0] + 1
    # It moved up as the queue drained: finally only the running b1 was ahead of it.
    assert positions["a2"][-1] == 1 and positions["a2"] == sorted(positions["a2"], reverse=True)


def test_cancel_queued_job(server) -> None:
    async def go() -> tuple[str, str, str]:
        async with await connect(server.url) as c:
            slow = await c.submit("generate", SLOW)
            queued = await c.submit("generate", FAST)
            await c.cancel(queued)
            q_last = [ev async for ev in c.events(queued)][-1]["type"]
            await c.cancel(slow)
            s_last = [ev async for ev in c.events(slow)][-1]["type"]
            await c.fetch(queued)
            again = [ev async for ev in c.events(queued)][-1]["type"]
            return q_last, s_last, again

    assert run(go()) == ("cancelled", "cancelled", "cancelled")


def test_cancel_running_job_stops_at_next_step(server) -> None:
    async def go() -> list[dict]:
        async with await connect(server.url) as c:
            jid = await c.submit("generate", SLOW | {"steps": 100})
            seen = []
            async for ev in c.events(jid):
                seen.append(ev)
                if ev["type"] == "progress" and ev["step"] == 2:
                    await c.cancel(jid)
            return seen

    seen = run(go())
    assert seen[-1]["type"] == "cancelled"
    steps = [ev["step"] for ev in seen if ev["type"] == "progress"]
    assert max(steps) < 100 and not any(ev["type"] == "result" for ev in seen)


def test_result_survives_disconnect_and_is_fetched_elsewhere(server) -> None:
    jid, me = uuid.uuid4().hex, uuid.uuid4().hex

    async def submit_and_drop() -> None:
        c = await connect(server.url, client_id=me)
        await c.submit("generate", FAST | {"steps": 3}, job_id=jid)
        await anext(c.events(jid))  # `queued`: accepted (journaled) by the server
        await c.close()  # gone before the job finishes

    async def fetch() -> list[dict]:
        async with await connect(server.url, client_id=me) as c:  # the same client, another connection
            await c.fetch(jid)
            return [ev async for ev in c.events(jid)]

    run(submit_and_drop())
    events = run(fetch())
    assert events[-1]["type"] == "result", events[-1]
    direct = run(_generate(server.url, FAST | {"steps": 3}))
    assert events[-1]["images"][0]["data"] == direct["images"][0]["data"]


async def _generate(url: str, params: dict) -> dict:
    async with await connect(url) as c:
        return await c.run("generate", params)


def test_progress_counts_steps_and_carries_throttled_previews(server) -> None:
    async def go() -> list[dict]:
        async with await connect(server.url) as c:
            seen: list[dict] = []
            await c.run("generate", FAST | {"steps": 8}, on_event=seen.append)
            return seen

    prog = [e for e in run(go()) if e["type"] == "progress"]
    assert [e["step"] for e in prog] == list(range(1, 9)) and prog[-1]["total"] == 8
    previews = [e for e in prog if "preview" in e]
    assert previews and previews[-1]["step"] == 8  # the last step always carries one
    assert previews[0]["preview"]["format"] == "webp" and previews[0]["preview"]["data"][:4] == b"RIFF"


def test_a_client_that_stops_reading_does_not_block_others(server) -> None:
    stuck = Raw(server.url)
    # A big rgba8 batch that this client will never read: the server's sends to it stall.
    stuck.send(
        {
            "type": "job",
            "id": uuid.uuid4().hex,
            "kind": "generate",
            "params": FAST | {"batch": 8, "width": 256, "height": 256, "result_format": "rgba8"},
        }
    )
    time.sleep(0.5)
    t0 = time.monotonic()
    res = run(_generate(server.url, FAST | {"seed": 99}))
    assert res["images"][0]["seed"] == 99
    assert time.monotonic() - t0 < 120  # a generous bound: only guards against a wedge
    stuck.close()


def test_large_results_arrive_in_chunks_intact(server) -> None:
    params = FAST | {"width": 768, "height": 768, "result_format": "rgba8"}  # 2.25 MiB > 1 MiB chunks
    raw = Raw(server.url)
    jid = uuid.uuid4().hex
    raw.send({"type": "job", "id": jid, "kind": "generate", "params": params})
    blobs = []
    while True:
        ev = raw.recv()
        if ev["type"] == "blob":
            blobs.append(ev)
        elif ev["type"] == "result":
            break
    assert len(blobs) == 3 and blobs[-1]["last"] and [b["seq"] for b in blobs] == [0, 1, 2]
    assert ev["images"][0]["blob"] == blobs[0]["ref"]
    data = b"".join(b["data"] for b in blobs)
    assert len(data) == 768 * 768 * 4
    via_client = run(_generate(server.url, params))["images"][0]["data"]
    assert np.array_equal(np.frombuffer(data, np.uint8), np.frombuffer(via_client, np.uint8))


def test_chunked_upload_is_accepted(server) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8).tobytes()
    raw = Raw(server.url)
    for i in range(4):
        assert (
            raw.replies(
                {"type": "blob", "ref": "up", "seq": i, "data": rgba[i * 4096 : (i + 1) * 4096], "last": i == 3}
            )
            == []
        )
    jid = uuid.uuid4().hex
    raw.send(
        {
            "type": "job",
            "id": jid,
            "kind": "generate",
            "params": FAST | {"strength": 0.5},
            "images": {"init": {"format": "rgba8", "w": 64, "h": 64, "blob": "up"}},
        }
    )
    assert raw.until(jid)["type"] == "result"


def test_preview_throttle_is_by_time_and_final_step_always_previews(monkeypatch) -> None:
    from server.workers import runner

    sent: list[dict] = []
    ticks = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6]
    real = time.monotonic
    fake = types.SimpleNamespace(monotonic=lambda: ticks.pop(0) if ticks else real())
    monkeypatch.setattr(runner, "time", fake)  # only this module's clock, other threads unaffected
    preview = np.zeros((8, 8, 3), np.uint8)
    progress = runner.progress_sender("p", ("webp",), sent.append)
    for step in range(1, 9):
        progress(step, 8, preview)
    with_preview = [ev["step"] for ev in sent if "preview" in ev]
    assert [ev["step"] for ev in sent] == list(range(1, 9))
    assert with_preview == [1, 4, 7, 8]  # >= 0.25 s apart, plus the last step
