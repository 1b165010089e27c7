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
from tests.servers import start_serve


def restarted(events: list[Event]) -> list[dict]:
    return [e.data for e in events if e.type == "server_restarted"]


class Served:
    """A `sdbridge serve` that the test stops and starts again on the same port and log (so, unless
    told otherwise, on the same state dir), and a plug-in client connected to it with a job started."""

    def __init__(self, tiny_models: Path, tmp_path: Path, job: GenerateRequest) -> None:
        self.models, self.log = tiny_models, tmp_path / "serve.log"
        self.srv = start_serve(self.models, self.log)
        self.client = Client(self.srv.url, backoff=(0.2, 1.0)).start()
        self.client.wait_connected(30)
        self.job = self.client.submit(job)
        wait_status(self.client, self.job, ("started",))

    def start_again(self, *extra: str) -> None:
        self.srv = start_serve(self.models, self.log, *extra, port=self.srv.port)

    def crash_and_restart(self, *extra: str) -> None:
        self.srv.proc.kill()  # SIGKILL, our own child by its pid
        self.srv.proc.wait(30)
        self.start_again(*extra)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.stop()
        self.srv.stop()


def test_a_job_survives_kill_9_and_the_client_hears_of_the_restart(tiny_models: Path, tmp_path: Path) -> None:
    with Served(tiny_models, tmp_path, long_job(seed=3)) as s:
        c = s.client
        queued = c.submit(GenerateRequest(sampling=Sampling(prompt="q", seed=4, steps=2), width=64, height=64))
        wait_status(c, queued, ("queued",))  # accepted: in the journal
        s.crash_and_restart()
        assert c.wait(s.job, 300).status == "result" and c.wait(queued, 300).status == "result"
        assert restarted(c.poll()) == [{"instance": c.welcome["instance"], "resubmitted": 0, "jobs": []}]


def test_a_job_the_new_server_does_not_know_is_submitted_again(tiny_models: Path, tmp_path: Path) -> None:
    with Served(tiny_models, tmp_path, long_job(seed=5)) as s:
        s.crash_and_restart("--state-dir", str(tmp_path / "a-new-empty-one"))
        state = s.client.wait(s.job, 300)
        assert state.status == "result" and state.result["params"]["seed"] == 5
        told = {"instance": s.client.welcome["instance"], "resubmitted": 1, "jobs": [s.job]}
        assert restarted(s.client.poll()) == [told]


def test_a_requeued_job_is_not_an_ended_one(tiny_models: Path, tmp_path: Path) -> None:
    with Served(tiny_models, tmp_path, long_job(seed=6)) as s:
        s.srv.proc.send_signal(signal.SIGTERM)
        s.srv.proc.wait(30)
        deadline = time.monotonic() + 30
        while not any(e.type == "requeued" for e in s.client.poll()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.client.job(s.job).status == "sent"  # waiting for the server, not cancelled
        s.start_again()
        assert s.client.wait(s.job, 300).status == "result"


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
