"""GIMP's Cancel kills the plug-in process; the cancel guard must then cancel the job on the server."""

from __future__ import annotations

import time

from plugins.common.jobs import GenerateRequest
from plugins.gimp.sdbridge_gimp import cancel_guard
from plugins.gimp.sdbridge_gimp.session import Session


def test_guard_cancels_job_when_plugin_dies(server) -> None:  # type: ignore[no-untyped-def]
    with Session(server.url) as s:
        s.connect()
        job = s.submit(GenerateRequest(prompt="a long job", steps=150, width=64, height=64, seed=1))
        guard = cancel_guard.spawn(server.url, "", job)
        assert guard.proc is not None
        for ev in s.events(job, 120):
            if ev is not None and ev["type"] in ("started", "progress"):
                break
        guard.proc.stdin.close()  # what SIGKILL of the plug-in looks like to the guard: EOF, no "done"
        types = [ev["type"] for ev in s.events(job, 120) if ev is not None]
        assert types[-1] == "cancelled", types
        assert guard.proc.wait(10) == 0


def test_guard_released_does_nothing() -> None:
    guard = cancel_guard.spawn("ws://127.0.0.1:9/", "tok", "some-job")
    t = time.monotonic()
    guard.release()
    assert guard.proc is not None and guard.proc.wait(5) == 0
    assert time.monotonic() - t < 3
