"""Jobs through a real server for the worker tests: send some, collect every event until each ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.wire import Raw

GEN = {"prompt": "a cat", "model": "tiny-sd15", "steps": 12, "width": 64, "height": 64}
TERMINAL = ("result", "error", "cancelled")
Event = dict[str, Any]


def job(jid: str, **params: Any) -> Event:
    return {"type": "job", "id": jid, "kind": "generate", "params": GEN | params}


def run_jobs(url: str, frames: list[Event], on_event: Callable[[Raw, Event], None] | None = None) -> list[Event]:
    """Send `frames` on one connection; every event until each job ended, and what else was due for them
    (`on_event(raw, ev)` sees the events as they come, e.g. to cancel)."""
    raw = Raw(url)
    events: list[Event] = []
    left = {f["id"] for f in frames}
    try:
        for frame in frames:
            raw.send(frame)
        while left:
            ev = raw.recv(120)
            events.append(ev)
            if on_event is not None:
                on_event(raw, ev)
            if ev.get("type") in TERMINAL and ev.get("id") in left:
                left.discard(ev["id"])
        raw.send({"type": "ping", "nonce": 1})
        while (ev := raw.recv(60))["type"] != "pong":
            events.append(ev)
    finally:
        raw.close()
    return events


def images(events: list[Event]) -> dict[str, list[bytes]]:
    """Each result's image bytes, by job id."""
    return {e["id"]: [i["data"] for i in e["images"]] for e in events if e["type"] == "result"}


def status(url: str) -> Event:
    raw = Raw(url)
    try:
        raw.send({"type": "status"})
        return raw.recv(30)
    finally:
        raw.close()
