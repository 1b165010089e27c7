"""Blocking job session for the GIMP plug-in (websockets' sync client + the shared protocol module).

A GIMP plug-in is a short-lived process per procedure call whose main thread must make every
libgimp call (progress, layers), so a blocking loop that polls the socket with a short timeout
and hands each event back is the simplest correct shape: no event loop, no cross-thread GIMP calls.
If the connection drops mid-job we reconnect and `fetch` the job: the server keeps it running and
retains its result, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from ._common import jobs, protocol
from .logic import PluginError

CLIENT_NAME = "gimp-plugin/0.1"
RECONNECT_TRIES = 5

# Friendly explanations for the protocol's error codes (the server's message is appended).
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
        raise PluginError(f"Server URL '{url}' is not a websocket URL like ws://127.0.0.1:8765/")
    return url.strip()


def describe_error(event: dict[str, Any]) -> str:
    code = str(event.get("code") or "error")
    message = str(event.get("message") or "no details")
    hint = ERROR_HINTS.get(code)
    return f"sdbridge server error ({code}): {message}" + (f"\n{hint}" if hint else "")


class Session:
    """One connection to the server, used for one job at a time."""

    def __init__(self, url: str, token: str = "", open_timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self.token = token or None
        self.open_timeout = open_timeout
        self.ws: Any = None
        self.welcome: dict[str, Any] = {}
        self.blobs: protocol.BlobAssembler | None = None

    # -- connection ------------------------------------------------------------------------------
    def connect(self) -> dict[str, Any]:
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        try:
            # max_size=None: the server bounds frames itself (limits.max_message_bytes) and chunks big results.
            self.ws = connect(self.url, open_timeout=self.open_timeout, max_size=None, compression=None)
        except (OSError, TimeoutError) as exc:
            raise PluginError(
                f"Cannot reach the sdbridge server at {self.url}: {exc}.\n"
                "Is `sdbridge serve` running, and is the Server URL right?"
            ) from None
        except (InvalidURI, InvalidHandshake) as exc:
            raise PluginError(f"{self.url} did not answer as a websocket server: {exc}") from None
        self._send(protocol.hello(CLIENT_NAME, self.token))
        event = self._recv(self.open_timeout)
        if event is None:
            raise PluginError(f"The server at {self.url} did not answer the handshake in time.")
        if event.get("type") == "error":
            raise PluginError(describe_error(event))
        if event.get("type") != "welcome":
            raise PluginError(f"Unexpected first message from the server: {event.get('type')!r}")
        self.welcome = event
        limits = event.get("limits") or {}
        self.blobs = protocol.BlobAssembler(int(limits.get("max_message_bytes") or 1 << 31))
        return event

    def close(self) -> None:
        if self.ws is not None:
            # closing a dead socket must never mask the real outcome
            with contextlib.suppress(Exception):
                self.ws.close()
            self.ws = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames ----------------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        self.ws.send(protocol.pack(msg))

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        if self.ws is None:
            raise ConnectionError("not connected")
        try:
            data = self.ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        limit = int((self.welcome.get("limits") or {}).get("max_message_bytes") or 1 << 31)
        return protocol.unpack(data, max(limit, 1 << 20) + (1 << 16))

    # -- jobs ------------------------------------------------------------------------------------
    def submit(self, request: jobs.JobRequest, extra_params: dict[str, Any] | None = None) -> str:
        job_id = uuid.uuid4().hex
        msg = request.message(job_id)
        if extra_params:
            msg["params"].update(extra_params)
        chunk = int((self.welcome.get("limits") or {}).get("chunk_bytes") or protocol.CHUNK_BYTES)
        # Large uploads go as blob frames first so no single frame exceeds the server's frame limit.
        for i, img in enumerate((msg.get("images") or {}).values()):
            data = img.get("data")
            if isinstance(data, bytes) and len(data) > chunk:
                ref = f"{job_id}.{i}"
                for frame in protocol.blob_frames(ref, data, chunk):
                    self._send(frame)
                del img["data"]
                img["blob"] = ref
        self._send(msg)
        return job_id

    def cancel(self, job_id: str) -> None:
        with contextlib.suppress(Exception):
            self._send({"type": "cancel", "id": job_id})

    def events(self, job_id: str, timeout: float, poll: float = 0.1) -> Iterator[dict[str, Any] | None]:
        """Events of `job_id` until its terminal one; yields None on idle ticks (for progress/cancel checks)."""
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + timeout
        tries = 0
        while True:
            if time.monotonic() > deadline:
                self.cancel(job_id)
                raise PluginError(f"No result from the server after {timeout:.0f} s; the job was cancelled.")
            try:
                event = self._recv(poll)
            except (ConnectionClosed, OSError) as exc:
                tries += 1
                if tries > RECONNECT_TRIES:
                    raise PluginError(f"Lost the connection to {self.url} and could not reconnect ({exc}).") from None
                time.sleep(min(2.0, 0.2 * 2**tries))
                self._reconnect(job_id)
                continue
            if event is None:
                yield None
                continue
            kind = event.get("type")
            if kind == "blob":
                assert self.blobs is not None
                self.blobs.add(event)
                continue
            if event.get("id") not in (None, job_id):
                continue
            if kind == "error" and "id" not in event:
                raise PluginError(describe_error(event))
            if kind == "result" and self.blobs is not None:
                event = protocol.resolve_blobs(event, self.blobs)
            yield event
            if kind in ("result", "error", "cancelled"):
                return

    def _reconnect(self, job_id: str) -> None:
        self.close()
        try:
            self.connect()
        except PluginError:
            return  # the next recv fails again and counts as another try
        self._send({"type": "fetch", "id": job_id})
