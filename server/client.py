"""Asyncio client for the sdbridge protocol (used by the CLI and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from .protocol import BlobAssembler, hello, pack, resolve_blobs, unpack

TERMINAL = ("result", "error", "cancelled", "superseded")
DEFAULT_URL = "ws://127.0.0.1:8765"


class ServerError(RuntimeError):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(f"{event.get('code')}: {event.get('message')}")
        self.event = event
        self.code = event.get("code")


class Client:
    """One connection; events are routed per job id into queues that `events()` drains."""

    def __init__(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self.other: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._jobs: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._blobs = BlobAssembler(welcome.get("limits", {}).get("max_message_bytes", 1 << 30))
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str = DEFAULT_URL, token: str | None = None, name: str = "sdbridge-cli") -> Client:
        ws = await connect(url, max_size=None, compression=None)
        await ws.send(pack(hello(name, token)))
        welcome = unpack(await ws.recv(), 1 << 30)
        if welcome["type"] != "welcome":
            await ws.close()
            raise ServerError(welcome)
        return cls(ws, welcome)

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                ev = unpack(raw, 1 << 31)
                if ev["type"] == "blob":
                    self._blobs.add(ev)
                    continue
                ev = resolve_blobs(ev, self._blobs)
                queue = self._jobs.get(ev.get("id")) if isinstance(ev.get("id"), str) else None
                (queue or self.other).put_nowait(ev)
        for q in [*self._jobs.values(), self.other]:
            q.put_nowait({"type": "closed"})

    def _queue(self, job_id: str) -> asyncio.Queue[dict[str, Any]]:
        return self._jobs.setdefault(job_id, asyncio.Queue())

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(pack(msg))

    async def submit(
        self,
        kind: str,
        params: dict[str, Any],
        images: dict[str, Any] | None = None,
        job_id: str | None = None,
        live: bool = False,
    ) -> str:
        """Send a job; `live` marks a live-painting frame (latest frame wins, see docs/protocol.md)."""
        job_id = job_id or uuid.uuid4().hex
        self._queue(job_id)
        msg = {"type": "job", "id": job_id, "kind": kind, "params": params, "images": images or {}}
        await self.send(msg | ({"live": True} if live else {}))
        return job_id

    async def cancel(self, job_id: str) -> None:
        await self.send({"type": "cancel", "id": job_id})

    async def fetch(self, job_id: str) -> None:
        self._queue(job_id)
        await self.send({"type": "fetch", "id": job_id})

    async def events(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """Every event of a job up to and including its terminal one."""
        queue = self._queue(job_id)
        while True:
            ev = await queue.get()
            yield ev
            if ev["type"] in (*TERMINAL, "closed"):
                return

    async def run(
        self,
        kind: str,
        params: dict[str, Any],
        images: dict[str, Any] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        job_id: str | None = None,
        live: bool = False,
    ) -> dict[str, Any]:
        """Submit and wait; returns the `result` event or raises ServerError."""
        job_id = await self.submit(kind, params, images, job_id=job_id, live=live)
        async for ev in self.events(job_id):
            if on_event is not None:
                on_event(ev)
            if ev["type"] == "result":
                return ev
            if ev["type"] in ("error", "cancelled", "superseded", "closed"):
                raise ServerError(ev)
        raise ServerError({"code": "closed", "message": "connection closed"})
