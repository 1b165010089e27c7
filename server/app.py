"""The websocket server: handshake, who owns which job, routing frames to the job queue, and its lifecycle
(journaled jobs re-queued on start; a graceful stop on SIGTERM/SIGINT)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import itertools
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import websockets
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve

from . import __version__, images
from .admission import Admission
from .connection import WRITE_LIMIT, Connection, WireConnection
from .imagestore import ImageStore
from .intake import Intake
from .jobs import KINDS
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
    preview_formats,
    unpack,
)
from .queue import Job, JobQueue, requeued_event
from .samplers import NAMES, SCHEDULE_NAMES, schedules_for
from .store import JobStore, StateDirError
from .workers.local import LocalWorker
from .workers.pool import WorkerPool, first_resident, resident_across

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10
STOP_JOB_S = 3.0  # how long a shutdown waits for the running job to reach its next step
FLUSH_S = 2.0  # and then for connections to take their last events
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TERMINAL = ("result", "error", "cancelled", "superseded")
FEATURES = ("image_hash", "live")  # optional protocol features this server understands
_conn_numbers = itertools.count(1)


class StartupError(RuntimeError):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Server:
    """`models` lists and checks model names; jobs run on `pool`'s workers (default: one local worker on
    `models` itself, the single-device server)."""

    def __init__(
        self,
        models: ModelManager,
        limits: Limits,
        token: str | None = None,
        state_dir: Path | None = None,
        allow_origins: Iterable[str] = (),
        pool: WorkerPool | None = None,
    ) -> None:
        self.models = models
        self.limits = limits
        self.token = token
        self.state_dir = state_dir  # None: nothing is journaled (jobs live as long as the process)
        self.instance = uuid.uuid4().hex  # a restart is a new instance, even on the same state dir
        self.admission = Admission(limits, allow_origins)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool = pool if pool is not None else WorkerPool([LocalWorker(models, limits)])
        self.queue = JobQueue(self.pool, limits, self._publish)
        self.images = ImageStore(limits.image_cache_bytes)
        self.intake = Intake(models, limits, self.queue, self.admission, self.images)
        self.subscribers: dict[str, set[Connection]] = {}
        self._accepting = asyncio.Event()  # set once the journal is read back and the worker runs
        self.connections: set[Connection] = set()
        # Ownership is per (token, client id); the token part keeps two tokens' clients apart.
        self._scope = hashlib.sha256(token.encode()).hexdigest()[:12] if token else "open"

    # --- events from the worker thread ------------------------------------------------------------

    def _publish(self, job: Job, event: dict[str, Any]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # shutting down: the journal has what matters
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(self._deliver, job.id, event)

    def _deliver(self, job_id: str, event: dict[str, Any]) -> None:
        for conn in list(self.subscribers.get(job_id, ())):
            conn.send(event)
        if event["type"] in TERMINAL:
            self.subscribers.pop(job_id, None)

    def _subscribe(self, conn: Connection, job_id: str) -> None:
        self.subscribers.setdefault(job_id, set()).add(conn)

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
            "instance": self.instance,
            "device": name,
            "vram": vram,
            "models": [e.describe() for e in self.models.entries.values()],
            "model": self.models.resident_name if single else first_resident(workers),
            "resident": self.models.resident() if single else resident_across(workers),
            "workers": workers,
            **{kind: sorted(found) for kind, found in self.models.assets.items()},
            **self.models.controls.welcome(),
            "jobs": sorted(KINDS),
            "features": list(FEATURES),
            "samplers": list(NAMES),
            "schedules": list(SCHEDULE_NAMES),
            "sampler_schedules": {name: list(schedules_for(name)) for name in NAMES},
            "limits": self.limits.as_dict(),
        }

    async def _handshake(self, ws: ServerConnection, conn_no: int) -> tuple[str, tuple[str, ...]] | None:
        """→ the client's owner key and preview formats, or None once the client has been told why not."""
        peer = str((ws.remote_address or ("?",))[0])
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
            client_id = f.str("client_id", None, max_len=64)
            if client_id is not None and not _CLIENT_ID.match(client_id):
                raise ProtocolError("handshake", "hello.client_id: 1-64 characters of letters, digits, '_.:-'")
            if self.token is not None:
                self._check_token(peer, f.str("token", "", max_len=1000))
            formats = preview_formats(msg, images.DEFAULT_PREVIEW_FORMATS)
        except TimeoutError:
            await _send_and_close(ws, error_event("handshake", f"no hello within {HELLO_TIMEOUT_S} s"))
            return None
        except ProtocolError as exc:
            await _send_and_close(ws, exc.event(), 1008 if exc.code in ("auth", "rate_limited") else 1002)
            return None
        await ws.send(pack(self.welcome()))
        return f"{self._scope}/{client_id or f'connection-{self.instance[:8]}-{conn_no}'}", formats

    def _check_token(self, peer: str, given: str) -> None:
        wait = self.admission.locked_for(peer)
        if wait > 0:
            raise ProtocolError("rate_limited", f"too many wrong tokens from {peer}: try again in {wait:.0f} s")
        if not hmac.compare_digest(given.encode(), self.token.encode() if self.token else b""):
            self.admission.auth_failed(peer)
            raise ProtocolError("auth", "missing or wrong token")
        self.admission.auth_ok(peer)

    # --- per connection -----------------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        await self._accepting.wait()
        if not self.admission.open():
            limit = self.limits.max_connections
            await _send_and_close(ws, error_event("too_many_connections", f"the server has {limit} connections"), 1013)
            return
        try:
            await self._serve_connection(ws)
        finally:
            self.admission.closed()

    async def _serve_connection(self, ws: ServerConnection) -> None:
        hello = await self._handshake(ws, next(_conn_numbers))
        if hello is None:
            return
        owner, formats = hello
        conn = Connection(ws, owner, self.limits, self._retained, preview_formats=formats)
        self.connections.add(conn)
        blobs = BlobAssembler(self.limits.max_message_bytes)
        tasks = [asyncio.create_task(conn.pump()), asyncio.create_task(conn.watchdog())]
        try:
            async for raw in ws:
                await conn.readable()  # backpressure: a client that doesn't read waits here
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
            conn.close()
            for task in tasks:
                task.cancel()
            self.connections.discard(conn)
            self.admission.give_upload(blobs.size)
            for subs in self.subscribers.values():
                subs.discard(conn)

    async def _frame(self, conn: Connection, raw: bytes | str, blobs: BlobAssembler) -> None:
        msg = unpack(raw, self.limits.max_message_bytes)
        kind = msg["type"]
        if kind == "job":
            subscribe = lambda jid: self._subscribe(conn, jid)  # noqa: E731
            job = await self.intake.submit(conn.owner, msg, len(raw), blobs, subscribe, conn.preview_formats)
            conn.send({"type": "queued", "id": job.id, "position": self.queue.submit(job)})
        elif kind == "cancel":
            await self._cancel(conn, msg)
        elif kind == "fetch":
            await self._fetch(conn, msg)
        elif kind == "status":
            conn.send(self.status())
        elif kind == "ping":
            conn.send({"type": "pong", "nonce": msg.get("nonce")})
        elif kind == "blob":
            self.intake.blob(msg, blobs)
        elif kind == "hello":
            raise ProtocolError("handshake", "already said hello")
        else:
            raise ProtocolError("unknown_type", f"unknown frame type {kind!r}")

    def _owned(self, conn: Connection, msg: Mapping[str, Any]) -> Job:
        """The job a cancel/fetch names, if this client may touch it (its own, or the shared token)."""
        job_id = check_id(msg.get("id"))
        job = self.queue.get(job_id)
        if job is None:
            raise ProtocolError("not_found", f"no job with id {job_id!r} (never submitted, or past retention)", job_id)
        given = msg.get("token")
        shared = (
            self.token is not None
            and isinstance(given, str)
            and hmac.compare_digest(given.encode(), self.token.encode())  # str compare refuses non-ASCII
        )
        if job.owner != conn.owner and not shared:
            raise ProtocolError("forbidden", f"job {job_id!r} belongs to another client", job_id)
        return job

    async def _cancel(self, conn: Connection, msg: Mapping[str, Any]) -> None:
        job = self._owned(conn, msg)
        if job.state == "done":  # too late: tell the canceller how it ended
            await self._send_terminal(conn, job)
            return
        self._subscribe(conn, job.id)  # so the canceller hears `cancelled`
        self.queue.cancel(job.id)

    async def _fetch(self, conn: Connection, msg: Mapping[str, Any]) -> None:
        # A job still being accepted (e.g. sent just before the socket dropped): wait for the verdict.
        while isinstance(msg.get("id"), str) and self.queue.accepting(msg["id"]):
            await asyncio.sleep(0.05)
        job = self._owned(conn, msg)
        if job.state == "done":
            await self._send_terminal(conn, job)
            return
        self._subscribe(conn, job.id)
        if job.state == "running":
            worker = job.worker
            conn.send({"type": "started", "id": job.id} | ({"worker": worker.info.id} if worker is not None else {}))
        else:
            conn.send({"type": "queued", "id": job.id, "position": self.queue.position(job)})

    def status(self) -> dict[str, Any]:
        """The workers (host, device, state, resident models, current job) and the queue's length."""
        return {"type": "status", "workers": self.pool.describe(), "queued": self.queue.pending()}

    async def _retained(self, job_id: str) -> dict[str, Any] | None:
        job = self.queue.get(job_id)
        return None if job is None else await asyncio.to_thread(self.queue.terminal, job)

    async def _send_terminal(self, conn: Connection, job: Job) -> None:
        event = await asyncio.to_thread(self.queue.terminal, job)  # result images are read from disk
        if event is None:
            raise ProtocolError("not_found", f"the result of job {job.id!r} is past retention", job.id)
        conn.send(event)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def run(
        self, host: str, port: int, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> None:
        if not is_loopback(host) and not self.token:
            raise StartupError(f"refusing to listen on {host} without --token: anyone on the network could use it")
        self.loop = asyncio.get_running_loop()
        store = self._open_store()
        try:
            # Listen first (a busy port is refused before any journaled job starts running), but
            # answer nobody until the journal is read back, so a `fetch` finds every job.
            server = await self._listen(host, port)
            if store is not None:
                await asyncio.to_thread(self.intake.restore, store)
            self.queue.start()
            self._accepting.set()
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.Future())
            await self._shutdown(server)
        finally:
            self.queue.shutdown(0)
            if store is not None:
                store.close()

    def _open_store(self) -> JobStore | None:
        if self.state_dir is None:
            return None
        try:
            store = JobStore(self.state_dir)
        except StateDirError as exc:
            raise StartupError(str(exc)) from None
        self.queue.store = store
        return store

    async def _listen(self, host: str, port: int) -> WsServer:
        try:
            server = await serve(
                self.handle,
                host,
                port,
                max_size=self.limits.max_message_bytes,
                max_queue=4,  # frames read ahead per connection: each may be max_message_bytes
                compression=None,  # images are already compressed or raw; deflate costs more than it saves
                write_limit=WRITE_LIMIT,
                process_request=self.admission.process_request,
                create_connection=WireConnection,
            )
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise StartupError(
                    f"port {port} on {host} is already in use (another server?): pick one with --port"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.bound_port = server.sockets[0].getsockname()[1] if server.sockets else port
        return server

    async def _shutdown(self, server: WsServer) -> None:
        """Stop accepting; every worker's running job ends (requeued, or finished); connections get their
        last events."""
        server.close(close_connections=False)
        stuck = await asyncio.to_thread(self.queue.shutdown, STOP_JOB_S)
        for job in stuck:  # a step that doesn't return in time: it stays queued in the journal
            self._deliver(job.id, requeued_event(job.id))
            self.queue.requeued(job)
        await asyncio.sleep(0)  # events the worker published just before it stopped
        for _ in range(int(FLUSH_S / 0.05)):
            if not any(c.outbox for c in self.connections):
                break
            await asyncio.sleep(0.05)
        closing = [c.ws.close(1001, "server shutting down") for c in self.connections]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=FLUSH_S)
        server.close()
        await asyncio.wait([asyncio.ensure_future(server.wait_closed())], timeout=FLUSH_S)


async def _send_and_close(ws: ServerConnection, event: dict[str, Any], code: int = 1002) -> None:
    try:
        await ws.send(pack(event))
        await ws.close(code, event["message"][:100])
    except websockets.ConnectionClosed:
        pass
