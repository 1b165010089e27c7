"""A raw, synchronous websocket session for tests that need to send arbitrary bytes."""

from __future__ import annotations

from typing import Any

import msgpack
from websockets.sync.client import ClientConnection, connect

from server.protocol import hello, pack


class Raw:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        say_hello: bool = True,
        client_id: str | None = None,
        preview_formats: list[str] | None = None,
        **kw: Any,
    ) -> None:
        """`client_id`: whose jobs this connection may fetch/cancel (default: its own only).
        `kw` goes to websockets' `connect` (e.g. `origin`, `max_queue`)."""
        self.ws: ClientConnection = connect(url, max_size=None, compression=None, **kw)
        self.welcome: dict[str, Any] | None = None
        self._nonce = 0
        if say_hello:
            self.ws.send(pack(hello("tests", token, preview_formats, client_id=client_id)))
            self.welcome = self.recv()

    def send(self, obj: Any) -> None:
        self.ws.send(obj if isinstance(obj, bytes | str) else pack(obj))

    def recv(self, timeout: float = 60) -> dict[str, Any]:
        return msgpack.unpackb(self.ws.recv(timeout=timeout), raw=False)

    def replies(self, frame: Any, timeout: float = 60) -> list[dict[str, Any]]:
        """Send `frame`, then a ping; everything that arrives before the pong."""
        self._nonce += 1
        self.send(frame)
        self.send({"type": "ping", "nonce": self._nonce})
        out = []
        while True:
            ev = self.recv(timeout)
            if ev.get("type") == "pong" and ev.get("nonce") == self._nonce:
                return out
            out.append(ev)

    def until(self, job_id: str, types: tuple[str, ...] = ("result", "error", "cancelled")) -> dict[str, Any]:
        while True:
            ev = self.recv()
            if ev.get("id") == job_id and ev["type"] in types:
                return ev

    def close(self) -> None:
        self.ws.close()
