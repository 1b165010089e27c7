"""Issue 12, failure 2: a restart loses nothing. A real `sdbridge serve` subprocess is killed (SIGKILL, by
its pid) mid-job with jobs queued behind it, or stopped with SIGTERM/SIGINT, and started again on the
same state dir: every job it had accepted completes or is fetchable."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest

from server.app import StartupError
from server.client import Client
from server.protocol import ImageRef
from server.store import Accepted, JobStore
from tests.server.test_reliability import rgba, terminal
from tests.servers import ServeProcess, in_process, start_serve
from tests.wire import Raw

SLOW = {"prompt": "slow", "steps": 150, "width": 128, "height": 128, "seed": 3}
FAST = {"prompt": "fast", "steps": 2, "width": 64, "height": 64}


def submit(raw: Raw, params: dict) -> str:
    jid = uuid.uuid4().hex
    raw.send({"type": "job", "id": jid, "kind": "generate", "params": params})
    return jid


def until(raw: Raw, jid: str, kind: str, step: int = 0) -> dict:
    while True:
        ev = raw.recv()
        if ev.get("id") == jid and ev["type"] == kind and ev.get("step", 0) >= step:
            return ev


def test_kill_9_mid_job_with_queued_jobs_loses_nothing(tiny_models: Path, tmp_path: Path) -> None:
    log, me = tmp_path / "serve.log", "crash-test"
    srv = start_serve(tiny_models, log)
    try:
        raw = Raw(srv.url, client_id=me)
        finished = submit(raw, FAST | {"seed": 1})
        assert terminal(raw, finished)[0]["type"] == "result"  # a result retained before the crash
        running = submit(raw, SLOW)
        queued = [submit(raw, FAST | {"seed": 10 + i}) for i in range(3)]
        until(raw, running, "progress", step=2)  # mid-job, three jobs waiting behind it
        srv.proc.kill()  # SIGKILL, to our own child by its pid
        srv.proc.wait(30)
        first_instance = raw.welcome["instance"] if raw.welcome else None
        srv = start_serve(tiny_models, log, port=srv.port)  # same log: same state dir
        again = Raw(srv.url, client_id=me)
        assert again.welcome is not None and again.welcome["instance"] != first_instance
        outcomes = {}
        for jid in [finished, running, *queued]:
            again.send({"type": "fetch", "id": jid})
            ev, data = terminal(again, jid)
            outcomes[jid] = ev["type"] if data else ev
        lost = [jid for jid, kind in outcomes.items() if kind != "result"]
        assert lost == [], outcomes
        print(f"\nkill -9 mid-job: {len(outcomes)} accepted jobs, {len(lost)} lost")
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_ends_the_running_job_requeued_and_restart_runs_it(
    tiny_models: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    log, me = tmp_path / "serve.log", "stop-test"
    srv = start_serve(tiny_models, log)
    try:
        raw = Raw(srv.url, client_id=me)
        running = submit(raw, SLOW)
        waiting = submit(raw, FAST | {"seed": 5})
        until(raw, running, "progress", step=2)
        srv.proc.send_signal(sig)
        ev = terminal(raw, running)[0]
        assert ev["type"] == "cancelled" and ev["requeued"] is True and "runs when it starts again" in ev["message"]
        assert srv.proc.wait(30) == 0
        srv = start_serve(tiny_models, log, port=srv.port)
        again = Raw(srv.url, client_id=me)
        for jid in (running, waiting):
            again.send({"type": "fetch", "id": jid})
            assert terminal(again, jid)[0]["type"] == "result"
    finally:
        srv.stop()


def test_the_cli_client_follows_its_job_across_a_crash(tiny_models: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    box: dict[str, ServeProcess] = {"srv": start_serve(tiny_models, log)}

    async def go() -> dict:
        client = await Client.connect(box["srv"].url)
        seen: list[str] = []

        def on_event(ev: dict) -> None:
            seen.append(ev["type"])
            if ev["type"] == "progress" and ev["step"] == 2 and "restarted" not in box:
                box["restarted"] = box["srv"]
                box["srv"].proc.kill()
                box["srv"].proc.wait(30)
                box["srv"] = start_serve(tiny_models, log, port=box["srv"].port)

        try:
            return await client.run("generate", SLOW, on_event=on_event, reconnect_s=120)
        finally:
            await client.close()

    try:
        result = asyncio.run(go())
        assert result["type"] == "result" and result["params"]["seed"] == SLOW["seed"] and "restarted" in box
    finally:
        box["srv"].stop()


def test_a_job_that_keeps_killing_the_server_is_not_run_again(models_dir: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = JobStore(state)
    store.add(Accepted("poison", "open/x", "echo", {}, {"image": ImageRef("rgba8", rgba(4, 4), 4, 4)}))
    image = {"image": ImageRef("rgba8", rgba(4, 4), 4, 4)}
    store.add(Accepted("fine", "open/x", "echo", {"result_format": "rgba8"}, image))
    for _ in range(3):
        store.started("poison")  # as if the server had died while running it, three times
    store.close()
    with in_process(models_dir, state_dir=state) as running:
        raw = Raw(running.url, client_id="x")
        raw.send({"type": "fetch", "id": "poison"})
        ev = terminal(raw, "poison")[0]
        assert ev["code"] == "job_failed" and "stopped 3 times" in ev["message"]
        raw.send({"type": "fetch", "id": "fine"})
        assert terminal(raw, "fine")[1] == rgba(4, 4)


def test_one_server_per_state_dir(models_dir: Path, tmp_path: Path) -> None:
    with (
        in_process(models_dir, state_dir=tmp_path),
        pytest.raises(StartupError, match="in use by another"),
        in_process(models_dir, state_dir=tmp_path),
    ):
        pass


def test_files_left_by_a_crash_between_file_and_row_are_removed(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    store.add(Accepted("j", "o", "echo", {}, {"image": ImageRef("png", b"x")}))
    store.close()
    (tmp_path / "inputs" / "99.0").write_bytes(b"orphan")  # written, then the process died
    (tmp_path / "results" / "1.0").write_bytes(b"a result of a job that is not done")
    JobStore(tmp_path).close()
    assert sorted(p.name for p in (tmp_path / "inputs").iterdir()) == ["1.0"]
    assert list((tmp_path / "results").iterdir()) == []


def test_a_requeued_job_previews_as_its_client_asked(models_dir: Path, tmp_path: Path) -> None:
    """hello.preview_formats is journaled with the job: after a restart its previews keep the format."""
    with in_process(models_dir, state_dir=tmp_path) as running:
        raw = Raw(running.url, client_id="pv", preview_formats=["rgba8"])
        jid = submit(raw, SLOW)
        first = until(raw, jid, "progress", step=1)
        assert first["preview"]["format"] == "rgba8"
    with in_process(models_dir, state_dir=tmp_path) as running:
        job = running.server.queue.get(jid)
        assert job is not None and job.preview_formats == ("rgba8",)
        again = Raw(running.url, client_id="pv")  # this connection would take the default, webp
        again.send({"type": "fetch", "id": jid})
        formats = set()
        while (ev := again.recv())["type"] != "result":
            if ev.get("id") == jid and "preview" in ev:
                formats.add(ev["preview"]["format"])
        assert ev["id"] == jid and formats <= {"rgba8"}
