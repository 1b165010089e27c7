"""The shared client (`plugins/common/client.py`) driven synchronously from the plug-in's main thread.

A GIMP plug-in is one short-lived process per procedure call, and every libgimp call (progress,
layers) must come from its main thread. The shared client runs the websocket in its own worker
thread (with reconnect + `fetch` of in-flight jobs); this adapter polls its event queue in a short
loop, hands job events to a callback (progress bar) and turns failures into `ActionError`s that
name the problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from ._common import ActionError, jobs
from ._common import client as common_client

CLIENT_NAME = "gimp-plugin/0.1"
POLL_S = 0.05

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


class Remote:
    """One server connection for one procedure call."""

    def __init__(self, url: str, token: str = "", open_timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.client = common_client.Client(
            self.url, token or None, client_name=CLIENT_NAME, open_timeout=open_timeout, backoff=(0.5, 4.0)
        )
        self.open_timeout = open_timeout
        self.welcome: dict[str, Any] = {}

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.stop(timeout=3.0)

    def connect(self) -> dict[str, Any]:
        """Wait for the welcome; the first failed attempt is reported (a GIMP call should not retry forever)."""
        self.client.start()
        deadline = time.monotonic() + self.open_timeout + 5
        while time.monotonic() < deadline:
            for ev in self.client.poll():
                if ev.type == "connected":
                    self.welcome = dict(ev.data)
                    return self.welcome
                if ev.type == "disconnected":
                    reason = str(ev.data.get("reason") or "connection failed")
                    if ev.data.get("fatal"):
                        raise ActionError(f"The sdbridge server at {self.url} refused the connection: {reason}")
                    raise ActionError(
                        f"Cannot reach the sdbridge server at {self.url}: {reason}.\n"
                        "Is `sdbridge serve` running, and is the Server URL right?"
                    )
            time.sleep(POLL_S)
        raise ActionError(f"The sdbridge server at {self.url} did not answer within {self.open_timeout:.0f} s.")

    def submit(self, request: jobs.JobRequest) -> str:
        return self.client.submit(request)

    def cancel(self, job_id: str) -> None:
        self.client.cancel(job_id)

    def wait_result(self, job_id: str, timeout: float, on_event: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Block until the job's terminal event; job events and connection changes go to `on_event`."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.client.poll():
                if ev.type == "disconnected" and ev.data.get("fatal"):
                    raise ActionError(f"The sdbridge server at {self.url} refused the connection: {ev.data['reason']}")
                if ev.type in ("disconnected", "connected"):
                    # The client reconnects by itself and re-attaches to the job with `fetch`.
                    on_event({"type": "reconnecting" if ev.type == "disconnected" else "reconnected"})
                    continue
                if ev.job_id != job_id:
                    continue
                on_event(ev.data)
                if ev.type == "result":
                    return ev.data
                if ev.type == "error":
                    raise ActionError(describe_error(ev.data))
                if ev.type == "cancelled":
                    raise ActionError("The job was cancelled on the server.")
            if time.monotonic() > deadline:
                self.cancel(job_id)
                raise ActionError(f"No result from the server after {timeout:.0f} s; the job was cancelled.")
            time.sleep(POLL_S)
