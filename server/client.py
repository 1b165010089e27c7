"""Asyncio client for the sdbridge protocol (used by the CLI and the tests).

A client has a stable `client_id` (one per `Client`, or the caller's): jobs belong to it across
connections, so `run` survives a dropped socket or a server restart. It reconnects, `fetch`es the
job (the server journals accepted jobs and keeps results), and submits it again only when the server
restarted and does not know it (`welcome.instance` changed and `fetch` says `not_found`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from .protocol import BlobAssembler, hello, pack, resolve_blobs, unpack

TERMINAL = ("result", "error", "cancelled")
DEFAULT_URL = "ws://127.0.0.1:8765"


class ServerError(RuntimeError):
    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__(f"{event.get('code')}: {event.get('message')}")
        self.event = event
        self.code = event.get("code")


async def _open(url: str, token: str | None, name: str, client_id: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, max_size=None, compression=None)
    await ws.send(pack(hello(name, token, client_id=client_id)))
    welcome = unpack(await ws.recv(), 1 << 30)
    if welcome["type"] != "welcome":
        await ws.close()
        raise ServerError(welcome)
    return ws, welcome


class Client:
    """One connection at a time; events are routed per job id into queues that `events()` drains."""

    def __init__(
        self, ws: ClientConnection, welcome: dict[str, Any], url: str = "", token: str | None = None, **kw: str
    ) -> None:
        self.url, self.token = url, token
        self.name = kw.get("name", "sdbridge-cli")
        self.client_id = kw.get("client_id") or uuid.uuid4().hex
        self.other: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._jobs: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._attach(ws, welcome)

    @classmethod
    async def connect(
        cls, url: str = DEFAULT_URL, token: str | None = None, name: str = "sdbridge-cli", client_id: str | None = None
    ) -> Client:
        client_id = client_id or uuid.uuid4().hex
        ws, welcome = await _open(url, token, name, client_id)
        return cls(ws, welcome, url, token, name=name, client_id=client_id)

    def _attach(self, ws: ClientConnection, welcome: dict[str, Any]) -> None:
        self.ws = ws
        self.welcome = welcome
        self._blobs = BlobAssembler(welcome.get("limits", {}).get("max_message_bytes", 1 << 30))
        self._reader = asyncio.create_task(self._read())

    @property
    def instance(self) -> str | None:
        """The server process's id: it changes when the server restarts."""
        return self.welcome.get("instance")

    async def reconnect(self, give_up_after: float = 60.0, first_wait: float = 0.2) -> bool:
        """Open a new connection as the same client (after a drop or a server restart).
        → whether the server restarted meanwhile (a new `instance`)."""
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()
        before = self.instance
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        wait = first_wait
        while True:
            try:
                ws, welcome = await _open(self.url, self.token, self.name, self.client_id)
                break
            except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError):
                if loop.time() + wait > deadline:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)
        for queue in self._jobs.values():  # what the old connection left unread belongs to it
            while not queue.empty():
                queue.get_nowait()
        self._attach(ws, welcome)
        return welcome.get("instance") != before

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
        self, kind: str, params: dict[str, Any], images: dict[str, Any] | None = None, job_id: str | None = None
    ) -> str:
        job_id = job_id or uuid.uuid4().hex
        self._queue(job_id)
        await self.send({"type": "job", "id": job_id, "kind": kind, "params": params, "images": images or {}})
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
        reconnect_s: float = 60.0,
    ) -> dict[str, Any]:
        """Submit and wait; returns the `result` event or raises ServerError. A dropped connection or a
        server restart (`cancelled` with `requeued`) is followed for up to `reconnect_s` each time."""
        job_id = await self.submit(kind, params, images)
        first: dict[str, Any] | None = None
        while True:
            ended = await self._follow(job_id, on_event, first)
            if ended["type"] == "result":
                return ended
            if ended["type"] not in ("closed", "cancelled") or (
                ended["type"] == "cancelled" and not ended.get("requeued")
            ):
                raise ServerError(ended)
            if reconnect_s <= 0:
                raise ServerError({"code": "closed", "message": "connection closed"})
            await self.reconnect(reconnect_s)
            await self.fetch(job_id)
            first = await self._queue(job_id).get()
            if first["type"] == "error" and first.get("code") == "not_found":
                # It never arrived (the socket dropped first), or a server without a state dir lost it.
                await self.submit(kind, params, images, job_id)
                first = None

    async def _follow(
        self, job_id: str, on_event: Callable[[dict[str, Any]], None] | None, first: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Hand the job's events to `on_event` up to its terminal one (or `closed`), `first` first."""
        if first is not None:
            if on_event is not None:
                on_event(first)
            if first["type"] in (*TERMINAL, "closed"):
                return first
        async for ev in self.events(job_id):
            if on_event is not None:
                on_event(ev)
            if ev["type"] in (*TERMINAL, "closed"):
                return ev
        return {"type": "closed"}
