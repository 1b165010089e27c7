"""Threaded sdbridge client: the network runs in a worker thread with its own asyncio loop.

The editor's UI thread only calls non-blocking methods (`submit`, `cancel`, `poll`): they hand
work to the loop with `call_soon_threadsafe` and read events from a thread-safe deque, so a slow or
dead server can never freeze Krita or GIMP. Reconnects happen automatically with exponential
backoff; jobs submitted while offline are sent on connect, and jobs that were in flight when the
socket dropped are re-attached with `fetch` (the server keeps running them and retains results).
Jobs belong to the client's `client_id` (sent in `hello`), so they stay ours across connections. When
`welcome.instance` changes the server restarted: its journal kept our jobs, `fetch` finds them, and
any it does not know are submitted again; a `server_restarted` event says how many.
How server events change a job is `jobstate`'s business; this module is the I/O around it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ._wire import protocol
from .jobs import JobRequest
from .jobstate import JOB_EVENTS, Event, JobState, RestartWatch, event_type, latest_progress
from .settings import DEFAULT_URL

# Errors after which retrying the same connection cannot help: stop and tell the user.
FATAL_CODES = ("auth", "protocol_version", "handshake")


class ClientError(Exception):
    pass


def new_job_id() -> str:
    return uuid.uuid4().hex


class Client:
    """Connection to one sdbridge server. Thread-safe; all public methods return immediately."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        client_name: str = "sdbridge-plugin/0.1",
        notify: Callable[[Event], None] | None = None,
        backoff: tuple[float, float] = (0.5, 10.0),
        open_timeout: float = 5.0,
        max_events: int = 10_000,
        preview_formats: Sequence[str] = (),
        client_id: str | None = None,
    ) -> None:
        self.url = url
        self.preview_formats = tuple(preview_formats)  # for hello; () = the server's default (webp)
        self.client_id = client_id or new_job_id()  # settings.client_id keeps one across editor restarts
        self.token = token or None
        self.client_name = client_name
        self.notify = notify
        self.backoff = backoff
        self.open_timeout = open_timeout
        self.welcome: dict[str, Any] | None = None
        self.fatal: str | None = None
        self._events: collections.deque[Event] = collections.deque(maxlen=max_events)
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ws: Any = None
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._blob_seq = itertools.count()
        self._instance: str | None = None  # the server process we last talked to
        self._restart: RestartWatch | None = None

    # --- lifecycle (UI thread) ---------------------------------------------------------------

    def start(self) -> Client:
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="sdbridge-client", daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and end the worker thread (running jobs keep running on the server)."""
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._kick)
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def reconnect_now(self) -> None:
        """Skip the backoff wait (e.g. the user pressed Connect)."""
        self.fatal = None
        self._call(self._kick)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    # --- jobs (UI thread) --------------------------------------------------------------------

    def submit(self, request: JobRequest, job_id: str | None = None) -> str:
        job_id = protocol.check_id(job_id or new_job_id())
        with self._lock:
            if job_id in self._jobs and not self._jobs[job_id].done:
                raise ClientError(f"job id {job_id!r} is already in use")
            self._jobs[job_id] = JobState(job_id, request)
        self._call(self._send_job, job_id)
        return job_id

    def cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.done:
                return
            job.cancel_requested = True
        self._call(self._send, {"type": "cancel", "id": job_id})

    def cancel_all(self) -> None:
        for job in self.jobs():
            if not job.done:
                self.cancel(job.id)

    def fetch(self, job_id: str) -> None:
        """Ask the server for a job's state/result (also works for ids from another session)."""
        with self._lock:
            if job_id not in self._jobs:
                raise ClientError(f"unknown job {job_id!r}: use attach() for jobs of another session")
        self._call(self._send, {"type": "fetch", "id": job_id})

    def attach(self, job_id: str, request: JobRequest) -> None:
        """Follow a job submitted earlier (e.g. before the editor restarted) and fetch its result."""
        with self._lock:
            self._jobs[job_id] = JobState(job_id, request, status="sent")
        self._call(self._send, {"type": "fetch", "id": job_id})

    def job(self, job_id: str) -> JobState | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return job.snapshot() if job else None

    def jobs(self) -> list[JobState]:
        with self._lock:
            return [j.snapshot() for j in self._jobs.values()]

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def poll(self, limit: int | None = None) -> list[Event]:
        """Events since the last poll, oldest first. Superseded `progress` events of a job are
        collapsed into the newest one so a UI that polls slowly never renders stale previews."""
        out: list[Event] = []
        while self._events and (limit is None or len(out) < limit):
            out.append(self._events.popleft())
        return latest_progress(out)

    def wait(self, job_id: str, timeout: float = 60.0) -> JobState:
        """Block until the job ends (scripts, tests, GIMP procedures; never from a UI event handler)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    raise ClientError(f"unknown job {job_id!r}")
                if job.done:
                    return job.snapshot()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} not finished after {timeout}s (status {job.status})")
                self._changed.wait(left)

    def wait_connected(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.welcome is None or self._ws is None:
                if self.fatal:
                    raise ClientError(self.fatal)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no connection to {self.url} after {timeout}s")
                self._changed.wait(left)
            return self.welcome

    # --- worker thread ---------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            raise ClientError("client not started")
        loop.call_soon_threadsafe(fn, *args)

    def _emit(self, ev: Event) -> None:
        self._events.append(ev)
        if self.notify is not None:
            # A broken UI callback must not kill the network thread.
            with contextlib.suppress(Exception):
                self.notify(ev)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if self._stopping and ws is not None:
            asyncio.ensure_future(ws.close())

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._wake = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._run())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _run(self) -> None:
        from websockets.asyncio.client import connect  # imported here: vendored path is set up by then

        delay = self.backoff[0]
        while not self._stopping:
            reason = ""
            began = time.monotonic()
            self._emit(Event("connecting", data={"url": self.url}))
            try:
                async with connect(
                    self.url,
                    max_size=None,  # the server enforces limits; results can be large
                    open_timeout=self.open_timeout,
                    ping_interval=20,
                    ping_timeout=60,
                    close_timeout=2,
                    compression=None,  # images are already compressed or raw; deflate only costs CPU
                ) as ws:
                    await self._session(ws)
                    reason = "connection closed"
            except Exception as exc:  # OSError, InvalidURI, InvalidStatus, ConnectionClosed, Timeout…
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            finally:
                with self._lock:
                    was_connected = self._ws is not None
                    self._ws = None
                    self._changed.notify_all()
            if self._stopping:
                self._emit(Event("disconnected", data={"reason": "stopped", "retry_in": None, "fatal": False}))
                break
            if was_connected and time.monotonic() - began > 5.0:
                # Only a session that lived a while resets the backoff: a server that accepts and
                # drops at once must not be hammered.
                delay = self.backoff[0]
            self._emit(
                Event(
                    "disconnected",
                    data={
                        "reason": self.fatal or reason,
                        "retry_in": None if self.fatal else delay,
                        "fatal": bool(self.fatal),
                    },
                )
            )
            assert self._wake is not None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                # A fatal error (bad token, wrong protocol) waits for reconnect_now() instead of spinning.
                await asyncio.wait_for(self._wake.wait(), timeout=None if self.fatal else delay)
            delay = min(delay * 2, self.backoff[1])

    async def _session(self, ws: Any) -> None:
        hello = protocol.hello(self.client_name, self.token, self.preview_formats, client_id=self.client_id)
        await ws.send(protocol.pack(hello))
        first = protocol.unpack(await asyncio.wait_for(ws.recv(), timeout=15), max_len=1 << 31)
        if first.get("type") == "error":
            code = first.get("code", "")
            if code in FATAL_CODES:
                self.fatal = f"{code}: {first.get('message', '')}"
            raise ClientError(f"server refused the connection: {code}: {first.get('message', '')}")
        if first.get("type") != "welcome":
            raise ClientError(f"expected welcome, got {first.get('type')!r}")
        limits = first.get("limits") or {}
        blobs = protocol.BlobAssembler(max_total=int(limits.get("max_message_bytes", 1 << 30)) * 4)
        instance = first.get("instance")
        restarted = self._instance is not None and instance != self._instance
        self._instance = instance
        with self._lock:
            self.welcome = first
            self.fatal = None
            self._ws = ws
            self._changed.notify_all()
        self._emit(Event("connected", data=first))
        await self._resume(restarted)
        async for raw in ws:
            try:
                msg = protocol.unpack(raw, max_len=1 << 31)
            except protocol.ProtocolError as exc:
                self._emit(Event("error", data={"code": exc.code, "message": exc.message}))
                continue
            if msg["type"] == "blob":
                try:
                    blobs.add(msg)
                except protocol.ProtocolError as exc:
                    self._emit(Event("error", data={"code": exc.code, "message": exc.message}))
                continue
            self._handle(protocol.resolve_blobs(msg, blobs))

    async def _resume(self, restarted: bool = False) -> None:
        """After (re)connecting: send jobs that never left, re-attach to jobs that were in flight.
        After a server restart, a job the server answers `not_found` for is submitted again."""
        with self._lock:
            todo = [(j.id, j.status, j.cancel_requested) for j in self._jobs.values() if not j.done]
            if restarted:
                in_flight = {j.id for j in self._jobs.values() if not j.done and j.status != "pending"}
                for job_id in in_flight:
                    self._jobs[job_id].status = "sent"  # its fetch decides: known, or to be sent again
                self._restart = RestartWatch(str(self._instance), in_flight)
                self._restart_answered(None, False)
        for job_id, status, cancel in todo:
            if status == "pending":
                await self._send_job_async(job_id)
            else:
                await self._send_async({"type": "fetch", "id": job_id})
            if cancel:
                await self._send_async({"type": "cancel", "id": job_id})

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        job_id = msg.get("id") if isinstance(msg.get("id"), str) else None
        resend = False
        with self._lock:
            job = self._jobs.get(job_id) if job_id else None
            if job is not None and kind in JOB_EVENTS:
                resend = job.apply(msg)
                self._restart_answered(job_id, resend)
            self._changed.notify_all()
        if resend and job_id:
            self._send_job(job_id)
            return
        self._emit(Event(event_type(msg), job_id, msg))

    def _restart_answered(self, job_id: str | None, resent: bool) -> None:
        if self._restart is not None and (done := self._restart.answered(job_id, resent)) is not None:
            self._restart = None
            self._emit(done)

    def _send_job(self, job_id: str) -> None:
        asyncio.ensure_future(self._send_job_async(job_id))

    async def _send_job_async(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != "pending" or self._ws is None:
                return  # offline: _resume() sends it after connecting
            request = job.request
            job.status = "sent"
        chunk = int(((self.welcome or {}).get("limits") or {}).get("chunk_bytes") or protocol.CHUNK_BYTES)
        frames = request.frames(job_id, chunk, self._blob_seq)
        for frame in frames:
            if not await self._send_async(frame):
                with self._lock:
                    if job.status == "sent":
                        job.status = "pending"  # resent by _resume() on the next connection
                return

    def _send(self, msg: dict[str, Any]) -> None:
        asyncio.ensure_future(self._send_async(msg))

    async def _send_async(self, msg: dict[str, Any]) -> bool:
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(protocol.pack(msg))
            return True
        except Exception:  # closed mid-send: the reconnect path resends/fetches
            return False
