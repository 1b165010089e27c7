"""One client connection's way out: an outbox with a byte budget, its sender task and a drain watchdog.

Events never block their producer (the worker, other clients' frames). Every event counts towards
`limits.max_outbox_bytes` by the bytes it carries plus a fixed overhead for the map itself. Over budget,
`progress`, `pong` and `partial` are shed (a newer progress, and the result with every pixel, follow),
and a `result` waits as a reference, read back from the journal when its turn comes. The client's
own frames wait too, and so does reading its socket while the socket's write buffer is full (so a
client that sends but never reads pushes back on itself, not on the server's memory). When nothing
drains for `limits.drain_timeout_s`, the connection is closed; its jobs keep running, stay fetchable.

So a connection that never reads holds at most: the budget, the socket's write buffer (`WRITE_LIMIT`),
one chunk being packed, and the one event being sent (at most one result). docs/protocol.md quotes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection
from websockets.server import ServerProtocol

from . import images
from .limits import Limits
from .protocol import error_event, pack, split_large_images

log = logging.getLogger(__name__)
Event = dict[str, Any]
EVENT_OVERHEAD = 512  # bytes a small event costs in memory (the dict, its keys, the queue slot)
SHEDDABLE = ("progress", "pong", "partial")
WRITE_LIMIT = 4 << 20  # the socket's write buffer before a send waits (websockets' write_limit)
_conn_ids = itertools.count(1)


def event_bytes(event: Event) -> int:
    """What an event costs while it waits: the overhead of a small map plus every byte and character
    it carries (image data, and whatever a client put in a `nonce` it wants echoed)."""
    return EVENT_OVERHEAD + _payload(event)


def _payload(obj: Any) -> int:
    if isinstance(obj, bytes | str):
        return len(obj)
    if isinstance(obj, dict):
        return sum(_payload(k) + _payload(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return sum(_payload(v) for v in obj)
    return 8


@dataclass(frozen=True)
class Later:
    """A result left in the journal while its connection is over budget: read back when it is sent."""

    job_id: str


Load = Callable[[str], Awaitable[Event | None]]


@dataclass(eq=False)  # identity semantics: connections live in sets
class Connection:
    ws: ServerConnection
    owner: str  # token-scoped client id (docs/protocol.md: ownership and fairness)
    limits: Limits
    load: Load  # a finished job's retained terminal event (None: gone)
    id: int = field(default_factory=lambda: next(_conn_ids))
    outbox: deque[tuple[Event | Later, int]] = field(default_factory=deque)
    queued_bytes: int = 0
    closed: bool = False
    last_drain: float = field(default_factory=time.monotonic)  # last frame sent, or when it went over budget
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    under_budget: asyncio.Event = field(default_factory=asyncio.Event)
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # from its hello

    def __post_init__(self) -> None:
        self.under_budget.set()

    @property
    def over_budget(self) -> bool:
        return self.queued_bytes > self.limits.max_outbox_bytes

    def send(self, event: Event) -> None:
        """Never blocks: over budget, superseded events are shed and terminal ones still queue."""
        if self.closed:
            return
        size = event_bytes(event)
        if self.queued_bytes + size > self.limits.max_outbox_bytes:
            if event.get("type") in SHEDDABLE:
                return
            if event.get("type") == "result" and isinstance(event.get("id"), str):
                event, size = Later(event["id"]), EVENT_OVERHEAD  # type: ignore[assignment]
        if not self.over_budget:
            self.last_drain = time.monotonic()  # the drain timeout counts from when it goes over
        self.outbox.append((event, size))
        self.queued_bytes += size
        if self.over_budget:
            self.under_budget.clear()
        self.wake.set()

    async def pump(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):  # the handler cleans up after a close
            await self._pump()

    async def _pump(self) -> None:
        seq = itertools.count()
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                item, size = self.outbox[0]
                event = await self.load(item.job_id) if isinstance(item, Later) else item
                if event is None:  # expired before the client read it
                    assert isinstance(item, Later)
                    gone = f"the result of job {item.job_id!r} is past retention"
                    event = error_event("not_found", gone, item.job_id)
                if isinstance(item, Later):  # read back: it counts in full while it is sent
                    self.queued_bytes += event_bytes(event) - size
                    size = event_bytes(event)
                    if self.over_budget:
                        self.under_budget.clear()
                for frame in split_large_images(event, f"r{next(seq)}", self.limits.chunk_bytes):
                    await self.ws.send(pack(frame))
                    self.last_drain = time.monotonic()
                del event
                if self.closed:  # closed meanwhile: the outbox was emptied
                    return
                self.outbox.popleft()
                self.queued_bytes -= size
                if not self.over_budget:
                    self.under_budget.set()

    async def watchdog(self) -> None:
        """Close the connection once it has been over budget with nothing drained for the timeout."""
        timeout = self.limits.drain_timeout_s
        while not self.closed:
            await asyncio.sleep(min(timeout / 4, 1.0))
            if self.over_budget and time.monotonic() - self.last_drain > timeout:
                waiting = self.queued_bytes
                log.warning("connection %s: nothing read for %.0f s, %d bytes waiting", self.id, timeout, waiting)
                await self.abort(1008, f"not reading: {waiting} bytes waited over {timeout:.0f} s")
                return

    async def readable(self) -> None:
        """Wait before handling the client's next frame while its own events pile up unread."""
        if self.over_budget:
            await self.under_budget.wait()

    async def abort(self, code: int, reason: str) -> None:
        self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason[:120]), 2)
        self.ws.transport.abort()

    def close(self) -> None:
        self.closed = True
        self.outbox.clear()  # nobody will send these: free them now
        self.queued_bytes = 0
        self.under_budget.set()
        self.wake.set()


class _ServerProtocol(ServerProtocol):
    """Tells the client why before closing for an oversize frame (websockets only sends close 1009)."""

    def fail(self, code: int, reason: str = "") -> None:
        if code == 1009 and self.state is websockets.protocol.State.OPEN:
            text = f"{reason}: send large images as blob chunks (docs/protocol.md)"
            with contextlib.suppress(Exception):
                self.send_binary(pack(error_event("message_too_large", text)))
        super().fail(code, reason)


class WireConnection(ServerConnection):
    """The websockets connection, with `_ServerProtocol`'s oversize-frame event, and no reading from a
    client while its socket's write buffer is full: websockets answers its pings by itself, and a
    client that pings without reading would otherwise grow that buffer without end."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        protocol.__class__ = _ServerProtocol  # websockets builds the protocol itself; only `fail` differs
        super().__init__(protocol, *args, **kwargs)
        self._queue_full = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # Reading stops for either reason: websockets' incoming queue is full, or our output is stuck.
        self.recv_messages.pause = lambda: self._set_queue_full(True)
        self.recv_messages.resume = lambda: self._set_queue_full(False)

    def _set_queue_full(self, full: bool) -> None:
        self._queue_full = full
        self._update_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport.is_closing():
            return
        if self._queue_full or self.paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
