"""The shared plugin client across server restarts (issue 12): it tells a restart (new `welcome.instance`)
from an unknown id, re-fetches its jobs from the server's journal, submits again what the server lost,
says so with a `server_restarted` event, and does not take a requeued job for an ended one."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from plugins.common.client import Client
from plugins.common.jobs import GenerateRequest, Sampling
from plugins.common.jobstate import Event, JobState, RestartWatch, event_type
from plugins.common.settings import Settings, with_client_id
from tests.plugins.common.test_plugin_client import long_job, wait_status
from tests.servers import ServeProcess, start_serve


def restarted(events: list[Event]) -> list[dict]:
    return [e.data for e in events if e.type == "server_restarted"]


def crash_and_restart(srv: ServeProcess, tiny_models: Path, log: Path, *extra: str) -> ServeProcess:
    srv.proc.kill()  # SIGKILL, our own child by its pid
    srv.proc.wait(30)
    return start_serve(tiny_models, log, *extra, port=srv.port)


def test_a_job_survives_kill_9_and_the_client_hears_of_the_restart(tiny_models: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    srv = start_serve(tiny_models, log)
    c = Client(srv.url, backoff=(0.2, 1.0)).start()
    try:
        c.wait_connected(30)
        running = c.submit(long_job(seed=3))
        queued = c.submit(GenerateRequest(sampling=Sampling(prompt="q", seed=4, steps=2), width=64, height=64))
        wait_status(c, running, ("started",))
        wait_status(c, queued, ("queued",))  # accepted: in the journal
        srv = crash_and_restart(srv, tiny_models, log)  # same log: the same state dir
        assert c.wait(running, 300).status == "result" and c.wait(queued, 300).status == "result"
        assert restarted(c.poll()) == [{"instance": c.welcome["instance"], "resubmitted": 0, "jobs": []}]
    finally:
        c.stop()
        srv.stop()


def test_a_job_the_new_server_does_not_know_is_submitted_again(tiny_models: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    srv = start_serve(tiny_models, log)
    c = Client(srv.url, backoff=(0.2, 1.0)).start()
    try:
        c.wait_connected(30)
        job = c.submit(long_job(seed=5))
        wait_status(c, job, ("started",))
        srv = crash_and_restart(srv, tiny_models, log, "--state-dir", str(tmp_path / "a-new-empty-one"))
        state = c.wait(job, 300)
        assert state.status == "result" and state.result["params"]["seed"] == 5
        assert restarted(c.poll()) == [{"instance": c.welcome["instance"], "resubmitted": 1, "jobs": [job]}]
    finally:
        c.stop()
        srv.stop()


def test_a_requeued_job_is_not_an_ended_one(tiny_models: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    srv = start_serve(tiny_models, log)
    c = Client(srv.url, backoff=(0.2, 1.0)).start()
    try:
        c.wait_connected(30)
        job = c.submit(long_job(seed=6))
        wait_status(c, job, ("started",))
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(30)
        deadline = time.monotonic() + 30
        while not any(e.type == "requeued" for e in c.poll()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.job(job).status == "sent"  # waiting for the server, not cancelled
        srv = start_serve(tiny_models, log, port=srv.port)
        assert c.wait(job, 300).status == "result"
    finally:
        c.stop()
        srv.stop()


# --- sans-I/O parts ---------------------------------------------------------------------------------


def test_requeued_cancel_keeps_the_job_open_and_is_its_own_event() -> None:
    job = JobState("j", long_job())
    job.status = "started"
    msg = {"type": "cancelled", "id": "j", "requeued": True}
    assert job.apply(msg) is False and job.status == "sent" and not job.done
    assert event_type(msg) == "requeued" and event_type({"type": "cancelled", "id": "j"}) == "cancelled"
    job.apply({"type": "cancelled", "id": "j"})
    assert job.done


def test_restart_watch_reports_once_every_answer_is_in() -> None:
    watch = RestartWatch("new", {"a", "b"})
    assert watch.answered("a", False) is None
    assert watch.answered("other", True) is None  # not one it waits for
    done = watch.answered("b", True)
    assert done is not None and done.type == "server_restarted"
    assert done.data == {"instance": "new", "resubmitted": 1, "jobs": ["b"]}
    assert RestartWatch("new", set()).answered(None, False) is not None  # nothing in flight: at once


def test_client_id_is_made_once_and_kept() -> None:
    s = with_client_id(Settings())
    assert len(s.client_id) == 32 and with_client_id(s) == s
    stored: dict[str, str] = {}
    s.save(stored.__setitem__)
    assert Settings.load(lambda k, d: stored.get(k, d)).client_id == s.client_id
