"""GIMP's Cancel kills the plug-in process; the cancel guard must then cancel the job on the server."""

from __future__ import annotations

import time

import pytest

from plugins.common.actions import ActionError
from plugins.common.jobs import GenerateRequest, Sampling
from plugins.gimp.sdbridge_gimp import cancel_guard
from plugins.gimp.sdbridge_gimp.remote import Remote


def test_guard_cancels_job_when_plugin_dies(server) -> None:  # type: ignore[no-untyped-def]
    with Remote(server.url) as s:
        s.connect()
        job = s.submit(GenerateRequest(sampling=Sampling(prompt="a long job", steps=150, seed=1), width=64, height=64))
        guard = cancel_guard.spawn(server.url, "", job, s.client.client_id)
        assert guard.proc is not None
        seen: list[str] = []

        def started(ev: dict) -> None:
            seen.append(ev["type"])
            if ev["type"] in ("started", "progress") and not guard.proc.stdin.closed:
                guard.proc.stdin.close()  # what SIGKILL of the plug-in looks like to the guard: EOF, no "done"

        with pytest.raises(ActionError, match="cancelled"):
            s.wait_result(job, 120, started)
        assert seen[-1] == "cancelled", seen
        assert guard.proc.wait(10) == 0


def test_guard_released_does_nothing() -> None:
    guard = cancel_guard.spawn("ws://127.0.0.1:9/", "tok", "some-job", "me")
    t = time.monotonic()
    guard.release()
    assert guard.proc is not None and guard.proc.wait(5) == 0
    assert time.monotonic() - t < 3
