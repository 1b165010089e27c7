"""The shared client (`plugins/common/client.py`) driven from the plug-in's main thread.

A GIMP plug-in is one short-lived process per procedure call, and every libgimp call (progress,
layers, the dialog) must come from its main thread. The shared client runs the websocket in its own
worker thread (with reconnect + `fetch` of in-flight jobs); this adapter polls its event queue —
in a short blocking loop for calls without a dialog (`connect`, `wait_result`), from the dialog's
GLib timer otherwise (`poll`, `follow`, `failure`) — and words every failure as an `ActionError`
that names the problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ._common import ActionError, jobs, jobstate
from ._common import client as common_client

Event = jobstate.Event

CLIENT_NAME = "gimp-plugin/0.1"
POLL_S = 0.05
CANCELLED = "The job was cancelled on the server."

# Friendly explanations for the protocol's error codes (the server's message is shown as well).
ERROR_HINTS = {
    "auth": "The server refused the token. Check the Token field.",
    "unknown_model": "The model is not on the server.",
    "model_load": "The server could not load the model.",
    "out_of_memory": "The server ran out of memory. Try a smaller image or fewer steps.",
    "image_too_large": "The image is too large for the server's limits.",
    "unknown_kind": "The server does not know this job kind. Update the server.",
    "protocol_version": "Plug-in and server speak different protocol versions. Update both.",
}


def check_url(url: str) -> str:
    parsed = urlparse(url.strip())
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ActionError(f"Server URL '{url}' is not a websocket URL like ws://127.0.0.1:8765/")
    return url.strip()


def describe_error(event: dict[str, Any]) -> str:
    code = str(event.get("code") or "error")
    message = str(event.get("message") or "no details")
    hint = ERROR_HINTS.get(code)
    return f"sdbridge server error ({code}): {message}" + (f"\n{hint}" if hint else "")


def connection_problem(url: str, data: dict[str, Any]) -> str:
    """What a `disconnected` event means for the user (dialog status line and script errors alike)."""
    reason = str(data.get("reason") or "connection failed")
    if data.get("fatal"):
        return f"The sdbridge server at {url} refused the connection: {reason}"
    return (
        f"Cannot reach the sdbridge server at {url}: {reason}.\n"
        "Is `sdbridge serve` running, and is the Server URL right?"
    )


def restarted_message(data: dict[str, Any]) -> str:
    n = int(data.get("resubmitted") or 0)
    again = f"; {n} job{'s' if n != 1 else ''} sent again" if n else ""
    return f"The sdbridge server restarted{again}."


class Remote:
    """One server connection for one procedure call (or one dialog)."""

    def __init__(
        self,
        url: str,
        token: str = "",
        open_timeout: float = 10.0,
        preview_formats: tuple[str, ...] = (),
        client_id: str = "",
    ) -> None:
        """`client_id`: whose jobs this connection may cancel/fetch ("": a new id of its own)."""
        self.url = check_url(url)
        self.client = common_client.Client(
            self.url,
            token or None,
            client_name=CLIENT_NAME,
            open_timeout=open_timeout,
            backoff=(0.5, 4.0),
            preview_formats=preview_formats,
            client_id=client_id or None,
        )
        self.open_timeout = open_timeout
        self.welcome: dict[str, Any] = {}

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.stop(timeout=3.0)

    def start(self) -> Remote:
        """Connect in the background (the client keeps retrying); `poll` reports how it goes."""
        self.client.start()
        return self

    def poll(self) -> list[Event]:
        """The client's events since the last call; keeps the latest welcome."""
        events = self.client.poll()
        for ev in events:
            if ev.type == "connected":
                self.welcome = dict(ev.data)
        return events

    def connect(self) -> dict[str, Any]:
        """Wait for the welcome; the first failed attempt is reported (a GIMP call should not retry forever)."""
        self.start()
        deadline = time.monotonic() + self.open_timeout + 5
        while time.monotonic() < deadline:
            for ev in self.poll():
                if ev.type == "connected":
                    return self.welcome
                if ev.type == "disconnected":
                    raise ActionError(connection_problem(self.url, ev.data))
            time.sleep(POLL_S)
        raise ActionError(f"The sdbridge server at {self.url} did not answer within {self.open_timeout:.0f} s.")

    def submit(self, request: jobs.JobRequest) -> str:
        return self.client.submit(request)

    def cancel(self, job_id: str) -> None:
        self.client.cancel(job_id)

    def follow(self, ev: Event, job_id: str) -> dict[str, Any] | None:
        """What one client event means for job `job_id`: the event to show (None: not about it).
        Raises ActionError when the server refused the connection (retrying cannot help)."""
        if ev.type == "disconnected" and ev.data.get("fatal"):
            raise ActionError(connection_problem(self.url, ev.data))
        if ev.type in ("disconnected", "connected"):
            # The client reconnects by itself and re-attaches to the job with `fetch`.
            return {"type": "reconnecting" if ev.type == "disconnected" else "reconnected"}
        if ev.type == "server_restarted":
            return {**ev.data, "type": "server_restarted"}
        return ev.data if ev.job_id == job_id else None

    def wait_result(self, job_id: str, timeout: float, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Block until the job's terminal event; job events and connection changes go to `on_event`."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.poll():
                shown = self.follow(ev, job_id)
                if shown is None:
                    continue
                on_event(shown)
                if shown.get("type") == "result":
                    return shown
                problem = failure(shown)
                if problem is not None:
                    raise ActionError(problem)
            if time.monotonic() > deadline:
                self.cancel(job_id)
                raise ActionError(timed_out(timeout))
            time.sleep(POLL_S)


def failure(event: dict[str, Any]) -> str | None:
    """The message for a job event that ends the job without a result (None for any other event)."""
    if event.get("type") == "error":
        return describe_error(event)
    if event.get("type") == "cancelled":
        return CANCELLED
    return None


def timed_out(timeout: float) -> str:
    return f"No result from the server after {timeout:.0f} s; the job was cancelled."
