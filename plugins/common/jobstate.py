"""What the client knows about its jobs, and how server events change it (sans-I/O).

The client's worker thread feeds every job event of a connection to `JobState.apply`; the UI
thread only ever sees snapshots and `Event`s. Nothing here touches a socket or a thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .jobs import JobRequest

TERMINAL = ("result", "error", "cancelled")
JOB_EVENTS = ("queued", "started", "plan", "progress", "partial", *TERMINAL)


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `type` is a protocol event type or a client one:
    `connecting`, `connected` (data = welcome), `disconnected` (data = {reason, retry_in, fatal}),
    `server_restarted` (data = {instance, resubmitted}: the server is a new process; its journal kept
    our jobs, and `resubmitted` of them it did not know were sent again), `requeued` (a job's server
    stopped while running it: not an end, the job runs again once the server is back)."""

    type: str
    job_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobState:
    """One of the client's jobs (snapshots are handed out, never the live one)."""

    id: str
    request: JobRequest
    status: str = "pending"  # pending -> sent -> queued -> started -> result|error|cancelled
    position: int | None = None
    step: int = 0
    total: int = 0
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def snapshot(self) -> JobState:
        return JobState(**{k: getattr(self, k) for k in self.__dataclass_fields__})

    def apply(self, msg: dict[str, Any]) -> bool:
        """Update from one of the job's events. True means: the job must be sent again (the socket
        dropped before the server saw it, or a restarted server lost it: `fetch` answered `not_found`)."""
        kind = msg["type"]
        if kind == "queued":
            self.status, self.position = "queued", msg.get("position")
        elif kind == "started":
            self.status, self.position = "started", None
        elif kind == "plan":
            self.plan = msg
        elif kind == "progress":
            self.status = "started"
            self.step, self.total = int(msg.get("step", 0)), int(msg.get("total", 0))
        elif kind == "result":
            self.status, self.result = "result", msg
        elif kind == "cancelled":
            # A server that stops gracefully requeues the running job: it runs again after the restart.
            self.status = "sent" if msg.get("requeued") else "cancelled"
        elif kind == "error":
            if msg.get("code") == "not_found" and self.status == "sent" and not self.cancel_requested:
                self.status = "pending"
                return True
            self.status, self.error = "error", msg
        return False


@dataclass
class RestartWatch:
    """After a server restart: the jobs whose `fetch` answer is awaited, and those sent again because
    the new server did not know them. Once every answer is in, `answered` gives `server_restarted`."""

    instance: str
    waiting: set[str]
    resubmitted: list[str] = field(default_factory=list)

    def answered(self, job_id: str | None, resent: bool) -> Event | None:
        if job_id is not None and job_id in self.waiting:
            self.waiting.discard(job_id)
            if resent:
                self.resubmitted.append(job_id)
        if self.waiting:
            return None
        data = {"instance": self.instance, "resubmitted": len(self.resubmitted), "jobs": list(self.resubmitted)}
        return Event("server_restarted", data=data)


def event_type(msg: dict[str, Any]) -> str:
    """The client event a server event becomes: a requeued `cancelled` is no end (see `Event`)."""
    return "requeued" if msg["type"] == "cancelled" and msg.get("requeued") else msg["type"]


def latest_progress(events: list[Event]) -> list[Event]:
    """`events` without the `progress` events a later one of the same job supersedes, so a UI that
    polls slowly never renders stale previews."""
    last: dict[str | None, int] = {}
    for i, ev in enumerate(events):
        if ev.type == "progress":
            last[ev.job_id] = i
    return [ev for i, ev in enumerate(events) if ev.type != "progress" or last[ev.job_id] == i]
