"""The websocket server: handshake, per-connection send queues, and routing frames to the job queue."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
import websockets
from websockets.asyncio.server import ServerConnection, serve

from . import __version__, images
from .errors import JobError
from .jobs import KINDS
from .jobs.base import ParseContext, parse_request
from .limits import Limits
from .models.registry import ModelManager
from .protocol import (
    PROTOCOL_VERSION,
    BlobAssembler,
    Fields,
    ProtocolError,
    check_id,
    error_event,
    pack,
    parse_image,
    preview_formats,
    split_large_images,
    unpack,
)
from .queue import Job, JobQueue
from .samplers import NAMES
from .workers.local import LocalWorker
from .workers.pool import WorkerPool

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10
MAX_BACKLOG = 256  # queued outgoing events per connection before progress events are dropped
_conn_ids = itertools.count(1)


class StartupError(RuntimeError):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(eq=False)  # identity semantics: connections live in sets
class Connection:
    ws: ServerConnection
    id: int = field(default_factory=lambda: next(_conn_ids))
    outbox: deque[dict[str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS  # from its hello

    def send(self, event: dict[str, Any]) -> None:
        """Never blocks: a slow client's backlog sheds progress events, never results."""
        if self.closed:
            return
        if len(self.outbox) >= MAX_BACKLOG and event.get("type") == "progress":
            return
        self.outbox.append(event)
        self.wake.set()

    async def pump(self, chunk: int) -> None:
        seq = itertools.count()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox:
                event = self.outbox.popleft()
                for frame in split_large_images(dict(event), f"r{next(seq)}", chunk):
                    await self.ws.send(pack(frame))


class Server:
    """`models` lists and checks model names; jobs run on `pool`'s workers (default: one local worker on
    `models` itself, the single-device server)."""

    def __init__(
        self, models: ModelManager, limits: Limits, token: str | None = None, pool: WorkerPool | None = None
    ) -> None:
        self.models = models
        self.limits = limits
        self.token = token
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool = pool if pool is not None else WorkerPool([LocalWorker(models, limits)])
        self.queue = JobQueue(self.pool, limits, self._publish)
        self.subscribers: dict[str, set[Connection]] = {}
        self.connections: set[Connection] = set()

    # --- events from the worker thread ------------------------------------------------------------

    def _publish(self, job: Job, event: dict[str, Any]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._deliver, job.id, event)

    def _deliver(self, job_id: str, event: dict[str, Any]) -> None:
        for conn in list(self.subscribers.get(job_id, ())):
            conn.send(event)
        if event["type"] in ("result", "error", "cancelled"):
            self.subscribers.pop(job_id, None)

    # --- handshake --------------------------------------------------------------------------------

    def welcome(self) -> dict[str, Any]:
        workers = self.pool.describe()
        dev = self.models.device
        name, vram = str(dev), None
        if dev.type == "cuda":
            props = torch.cuda.get_device_properties(dev)
            name, vram = f"{dev} {props.name}", int(props.total_memory)
        single = self.pool.single_local(self.models)  # the one-device server: its own models run the jobs
        if not single:  # the gateway's own device runs no job
            name = ", ".join(dict.fromkeys(w["device"] for w in workers)) or "no worker yet"
        return {
            "type": "welcome",
            "protocol": PROTOCOL_VERSION,
            "server": f"sdbridge {__version__}",
            "device": name,
            "vram": vram,
            "models": [e.describe() for e in self.models.entries.values()],
            "model": self.models.resident_name if single else _first_resident(workers),
            "resident": self.models.resident() if single else _resident(workers),
            "workers": workers,
            **{kind: sorted(found) for kind, found in self.models.assets.items()},
            "jobs": sorted(KINDS),
            "samplers": list(NAMES),
            "limits": self.limits.as_dict(),
        }

    async def _handshake(self, ws: ServerConnection) -> tuple[str, ...] | None:
        """The hello checked and answered; returns its preview formats (None: refused, closed)."""
        try:
            raw = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S)
            msg = unpack(raw, self.limits.max_message_bytes)
            if msg["type"] != "hello":
                raise ProtocolError("handshake", f"the first frame must be 'hello', got {msg['type']!r}")
            f = Fields(msg, "hello")
            version = f.int("protocol")
            if version != PROTOCOL_VERSION:
                raise ProtocolError("protocol_version", f"client speaks protocol {version}, server {PROTOCOL_VERSION}")
            f.str("client", "unknown", max_len=200)
            if self.token is not None:
                given = f.str("token", "", max_len=1000)
                if not hmac.compare_digest(given.encode(), self.token.encode()):
                    raise ProtocolError("auth", "missing or wrong token")
            formats = preview_formats(msg, images.DEFAULT_PREVIEW_FORMATS)
        except TimeoutError:
            await _send_and_close(ws, error_event("handshake", f"no hello within {HELLO_TIMEOUT_S} s"))
            return None
        except ProtocolError as exc:
            await _send_and_close(ws, exc.event(), 1008 if exc.code == "auth" else 1002)
            return None
        await ws.send(pack(self.welcome()))
        return formats

    # --- per connection -----------------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        formats = await self._handshake(ws)
        if formats is None:
            return
        conn = Connection(ws, preview_formats=formats)
        self.connections.add(conn)
        blobs = BlobAssembler(self.limits.max_message_bytes)
        pump = asyncio.create_task(conn.pump(self.limits.chunk_bytes))
        try:
            async for raw in ws:
                try:
                    await self._frame(conn, raw, blobs)
                except ProtocolError as exc:
                    conn.send(exc.event())
                except Exception as exc:  # a bug in handling one frame must not end the connection
                    log.exception("frame handling failed")
                    conn.send(error_event("internal", f"{type(exc).__name__}: {exc}"))
        except websockets.ConnectionClosed:
            pass
        finally:
            conn.closed = True
            pump.cancel()
            self.connections.discard(conn)
            for subs in self.subscribers.values():
                subs.discard(conn)

    async def _frame(self, conn: Connection, raw: bytes | str, blobs: BlobAssembler) -> None:
        msg = unpack(raw, self.limits.max_message_bytes)
        kind = msg["type"]
        if kind == "job":
            await self._submit(conn, msg, blobs)
        elif kind == "cancel":
            self._cancel(conn, check_id(msg.get("id")))
        elif kind == "fetch":
            self._fetch(conn, check_id(msg.get("id")))
        elif kind == "status":
            conn.send(self.status())
        elif kind == "ping":
            conn.send({"type": "pong", "nonce": msg.get("nonce")})
        elif kind == "blob":
            blobs.add(msg)
        elif kind == "hello":
            raise ProtocolError("handshake", "already said hello")
        else:
            raise ProtocolError("unknown_type", f"unknown frame type {kind!r}")

    async def _submit(self, conn: Connection, msg: dict[str, Any], blobs: BlobAssembler) -> None:
        job_id = check_id(msg.get("id"))
        f = Fields(msg, "job", job_id)
        kind = f.str("kind", max_len=64)
        if kind not in KINDS:
            raise ProtocolError(
                "unknown_kind", f"unknown job kind {kind!r}; supported: {', '.join(sorted(KINDS))}", job_id
            )
        params = Fields(f.map("params", {}), "params", job_id)
        raw_images = f.map("images", {})
        refs = {name: parse_image(obj, str(name), blobs.done, job_id) for name, obj in raw_images.items()}
        for img in raw_images.values():
            if isinstance(img, dict) and isinstance(img.get("blob"), str):
                blobs.drop(img["blob"])

        def decode(name: str, ref: Any) -> Any:
            return images.decode(ref, self.limits.max_image_pixels, name, job_id)

        pctx = ParseContext(self.models, self.limits, job_id, decode)
        # Decoding a large PNG takes a while: off the loop, so other clients keep being served.
        try:
            request = await asyncio.to_thread(parse_request, KINDS[kind], params, refs, pctx)
        except ProtocolError as exc:
            exc.job_id = exc.job_id or job_id  # helpers deep in parsing don't know the id
            raise
        except JobError as exc:  # from the model layer (unknown model, bad name…): same code and message
            raise ProtocolError(exc.code, exc.message, job_id) from exc
        job = Job(job_id, kind, request, conn.id, preview_formats=conn.preview_formats)
        self.subscribers.setdefault(job_id, set()).add(conn)
        try:
            position = self.queue.submit(job)
        except ProtocolError:
            self.subscribers.get(job_id, set()).discard(conn)
            raise
        conn.send({"type": "queued", "id": job_id, "position": position})

    def _cancel(self, conn: Connection, job_id: str) -> None:
        job = self.queue.get(job_id)
        if job is None:
            raise ProtocolError("not_found", f"no job with id {job_id!r}", job_id)
        if job.state == "done":  # too late: tell the canceller how it ended
            assert job.terminal is not None
            conn.send(job.terminal)
            return
        self.subscribers.setdefault(job_id, set()).add(conn)  # so the canceller hears `cancelled`
        self.queue.cancel(job_id)

    def _fetch(self, conn: Connection, job_id: str) -> None:
        job = self.queue.get(job_id)
        if job is None:
            raise ProtocolError("not_found", f"no job with id {job_id!r} (never submitted, or past retention)", job_id)
        if job.state == "done":
            assert job.terminal is not None
            conn.send(job.terminal)
            return
        self.subscribers.setdefault(job_id, set()).add(conn)
        if job.state == "running":
            worker = job.worker
            conn.send({"type": "started", "id": job_id} | ({"worker": worker.info.id} if worker is not None else {}))
        else:
            pos = next((p for j, p in self.queue.positions() if j.id == job_id), 0)
            conn.send({"type": "queued", "id": job_id, "position": pos})

    def status(self) -> dict[str, Any]:
        """The workers (host, device, state, resident models, current job) and the queue's length."""
        return {"type": "status", "workers": self.pool.describe(), "queued": self.queue.pending()}

    # --- lifecycle ------------------------------------------------------------------------------------

    async def run(
        self, host: str, port: int, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> None:
        if not is_loopback(host) and not self.token:
            raise StartupError(f"refusing to listen on {host} without --token: anyone on the network could use it")
        self.loop = asyncio.get_running_loop()
        self.queue.start()
        try:
            async with serve(
                self.handle,
                host,
                port,
                max_size=self.limits.max_message_bytes,
                compression=None,  # images are already compressed or raw; deflate costs more than it saves
                write_limit=4 << 20,
            ) as server:
                self.bound_port = server.sockets[0].getsockname()[1] if server.sockets else port
                if ready is not None:
                    ready.set()
                await (stop.wait() if stop is not None else asyncio.Future())
        finally:
            self.queue.stop()


def _resident(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`welcome.resident` across workers: each model once (the workers' lists say where exactly)."""
    where: dict[str, str] = {}
    for w in workers:
        for name in w["resident"]:
            if w["device"].startswith("cuda") or name not in where:
                where[name] = "vram" if w["device"].startswith("cuda") else "ram"
    return [{"name": name, "where": place} for name, place in where.items()]


def _first_resident(workers: list[dict[str, Any]]) -> str | None:
    return next((w["resident"][0] for w in workers if w["resident"]), None)


async def _send_and_close(ws: ServerConnection, event: dict[str, Any], code: int = 1002) -> None:
    try:
        await ws.send(pack(event))
        await ws.close(code, event["message"][:100])
    except websockets.ConnectionClosed:
        pass
