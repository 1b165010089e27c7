"""The plugin's brain inside Krita: settings, the client, jobs in flight, and the review history.

UI-independent (the docker observes it through `listeners`); the network runs in the client's
worker thread and a 50 ms QTimer on the UI thread drains its events, so nothing here blocks Krita.
Every text the user reads comes from `plugins/common/messages.py`.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from . import controls, document, resume
from ._common import actions, client, messages, pixels, settings
from .qt import QTimer, decodable_formats, decode_to_bgra
from .review import Review

Settings = settings.Settings
ActionError = actions.ActionError
CLIENT_NAME = "krita-plugin/0.2"
CANVAS_SETTLE_MS = 500  # between taking the preview layer away and resizing the image (see Review.apply)


@dataclass
class Pending:
    job_id: str
    kind: str  # the request's kind (Generate with a selection is an inpaint job)
    action: str
    doc_key: str  # its document, looked up when the result comes (a kept wrapper may outlive the document)
    request: Any
    base: tuple[int, int]
    submitted: float = field(default_factory=time.monotonic)


def log(text: str) -> None:
    """A line in Krita's terminal output (stderr: Krita's embedded stdout is buffered until exit)."""
    print(f"sdbridge: {text}", file=sys.stderr, flush=True)


def read_settings() -> Settings:
    app = Krita.instance()
    return Settings.load(lambda key, default: app.readSetting(settings.GROUP, key, default))


def write_setting(key: str, value: Any) -> None:
    Krita.instance().writeSetting(settings.GROUP, key, settings.to_string(value))


class Controller:
    def __init__(self, deps_error: str | None = None) -> None:
        self.deps_error = deps_error
        self.client: Any = None
        self.offline = False  # the client's last connection attempt failed
        self.pending: dict[str, Pending] = {}
        self.applying = 0  # applies waiting for the canvas to settle before a resize
        self.review = Review()
        self.status = "Not connected — press Connect, or run a job"
        self.message = deps_error or ""
        self.preview: tuple[int, int, bytes] | None = None  # (w, h, BGRA) of the latest step preview
        self.preview_frames = 0  # step previews decoded since start (scripts, tests)
        self.preview_format: str | None = None  # the format the server chose for the latest one
        self._preview_warned = False
        self.progress: tuple[int, int] = (0, 0)
        self.finished: list[dict[str, Any]] = []  # for tests/scripts: {job, kind, status, entries, error}
        self.listeners: list[Callable[[], None]] = []
        # See every client event first; True = consumed (live painting's frames, plugins/krita/live.py).
        self.observers: list[Callable[[Any], bool]] = []
        self.live: Any = None  # the live-painting session, made by the docker's Live tab
        self._timer = QTimer()
        self._timer.setInterval(50)
        self._timer.timeout.connect(self._tick)

    # --- connection ------------------------------------------------------------------------

    @property
    def welcome(self) -> dict[str, Any] | None:
        return self.client.welcome if self.client is not None else None

    def ensure_client(self, s: Any) -> bool:
        if self.deps_error:
            self._notify_user(self.deps_error)
            return False
        token = s.token or None
        old = self.client
        if old is not None and (old.url != s.url or old.token != token):
            old.stop(timeout=0.5)
            self.client = None
        if self.client is None:
            ident = settings.with_client_id(s).client_id  # one id for good: results stay ours after a restart
            if ident != s.client_id:
                write_setting("client_id", ident)
            formats = decodable_formats()
            self.client = client.Client(s.url, token, CLIENT_NAME, preview_formats=formats, client_id=ident).start()
            self.status = f"Connecting to {s.url}…"
            self.offline = False
            self._timer.start()
            if old is not None:
                self._move_jobs(old)
        return True

    def _move_jobs(self, old: Any) -> None:
        """The address or token changed: jobs that never reached the old server go to the new one
        (the user fixed the address); jobs the old server has cannot follow and are dropped."""
        for job in list(self.pending.values()):
            state = old.job(job.job_id)
            if state is not None and state.status == "pending":
                self.client.submit(job.request, job.job_id)
                continue
            self.pending.pop(job.job_id, None)
            resume.forget(job.job_id)
            self.message = f"{messages.kind_name(job.kind)}: left behind on the previous server"
            self.finished.append({"job": job.job_id, "kind": job.kind, "status": "dropped", "entries": []})

    def connect(self) -> None:
        s = read_settings()
        if self.ensure_client(s):
            self.client.reconnect_now()
        self._changed()

    def resume_documents(self) -> None:
        """Follow the jobs sent before Krita restarted (resume.py) whose documents are open now."""
        for rec in resume.waiting(set(self.pending)):
            if not self.ensure_client(read_settings()):
                return
            request = rec.request()
            self.client.attach(rec.job, request)
            self.pending[rec.job] = Pending(rec.job, rec.kind, rec.kind, rec.doc, request, rec.base)
            self.message = f"{messages.kind_name(rec.kind)}: fetching a result sent before Krita restarted"
            self._changed()

    def shutdown(self) -> None:
        self._timer.stop()
        if self.client is not None:
            self.client.stop(timeout=1.0)
            self.client = None

    # --- actions ---------------------------------------------------------------------------

    def run_action(self, action: str) -> str | None:
        """Plan and submit a job for the active document; user errors go to the message line."""
        try:
            if action == "cancel":
                self.cancel_all()
                return None
            doc = document.active_document()
            if doc is None:
                raise ActionError("open a document first")
            s = read_settings()
            if not self.ensure_client(s):
                return None
            canvas = document.read_canvas(doc)
            request = actions.PLANNERS[action](canvas, s, self.welcome)
            if any(f.name == "controls" for f in fields(request)):  # the document's control layers guide it
                request = replace(request, controls=controls.for_request(doc, self.welcome))
            key = document.doc_key(doc, create=True) or ""  # the result finds its document's history by it
            job_id = self.client.submit(request)
            self.pending[job_id] = Pending(job_id, request.kind, action, key, request, (canvas.w, canvas.h))
            resume.remember(job_id, key, request, (canvas.w, canvas.h))
            link = "online" if self.client.connected else "offline" if self.offline else "connecting"
            self.message = messages.submitted(request, link, s.url)
            if getattr(request, "regions", ()):  # region layers went with it (regions.py)
                n = len(request.regions)
                self.message += f" ({n} region{'s' if n != 1 else ''})"
            self._changed()
            return job_id
        except ActionError as exc:
            self._notify_user(f"{messages.kind_name(action)}: {exc}")
        except Exception as exc:  # never let an action traceback vanish into Krita's log only
            traceback.print_exc()
            self._notify_user(f"{messages.kind_name(action)} failed: {type(exc).__name__}: {exc}")
        return None

    def cancel(self, job_id: str) -> None:
        if self.client is not None:
            self.client.cancel(job_id)

    def cancel_all(self) -> None:
        if self.client is not None:
            for job_id in list(self.pending):
                self.client.cancel(job_id)
        self.message = "Cancelling…" if self.pending else "Nothing to cancel"
        self._changed()

    def queue(self) -> list[Any]:
        """Snapshots of this session's unfinished jobs, oldest first (for the docker's queue line)."""
        if self.client is None:
            return []
        return [j for j in self.client.jobs() if not j.done and j.id in self.pending]

    # --- review history (the docker's strip and buttons) ------------------------------------

    def entries(self) -> list[Any]:
        return self.review.entries(document.active_document())

    def shown_entry(self) -> str | None:
        return self.review.shown_id(document.active_document())

    def show_entry(self, entry_id: str) -> bool:
        return self._on_entry("preview", lambda doc: self.review.show(doc, entry_id))

    def apply_entry(self, entry_id: str, to_selection: bool = False) -> bool:
        def done(node: Any) -> None:
            self.message = f"Applied as layer “{node.name()}”" + (" through the selection" if to_selection else "")

        def run(doc: Any) -> None:
            settle, finish = self.review.apply(doc, entry_id, to_selection)
            if not settle:
                done(finish())
                return
            self.applying += 1
            self.message = "Resizing the canvas…"
            key = document.doc_key(doc, create=True)

            def later() -> None:
                self.applying -= 1
                self._on_entry("apply", lambda _doc: done(finish()), key)

            QTimer.singleShot(CANVAS_SETTLE_MS, later)

        return self._on_entry("apply", run)

    def discard_entry(self, entry_id: str) -> bool:
        return self._on_entry("discard", lambda doc: self.review.discard(doc, entry_id))

    def reuse_entry(self, entry_id: str) -> bool:
        def run(doc: Any) -> None:
            entry = self.review.reuse(doc, entry_id, write_setting)
            self.message = f"Prompt and seed {entry.seed} copied to the docker"

        return self._on_entry("copy", run)

    def on_document(self, what: str, fn: Callable[[Any], Any]) -> bool:
        """Run `fn(active document)` for the docker (the control-layer list); errors become messages."""
        return self._on_entry(what, fn)

    def _on_entry(self, what: str, fn: Callable[[Any], Any], key: str | None = None) -> bool:
        """Run a history action on the document with id `key` (default: the active one); errors become
        messages."""
        try:
            doc = document.active_document() if key is None else document.by_key(key)
            if doc is None:
                raise ActionError("open a document first" if key is None else "its document was closed")
            fn(doc)
            self._changed()
            return True
        except ActionError as exc:
            self._notify_user(f"{what}: {exc}")
        except Exception as exc:
            traceback.print_exc()
            self._notify_user(f"{what} failed: {type(exc).__name__}: {exc}")
        return False

    # --- events (UI thread) ----------------------------------------------------------------

    def _tick(self) -> None:
        if self.client is None:
            return
        events = self.client.poll()
        if not events:
            return
        for ev in events:
            try:
                self._event(ev)
            except Exception as exc:
                traceback.print_exc()
                self._notify_user(f"could not handle {ev.type}: {type(exc).__name__}: {exc}")
        self._changed()

    def _event(self, ev: Any) -> None:
        if any(fn(ev) for fn in list(self.observers)):
            return
        t, data = ev.type, ev.data
        job = self.pending.get(ev.job_id) if ev.job_id else None
        if t == "connected":
            self.status, self.offline = messages.connected(data), False
        elif t == "disconnected":
            self.status, self.offline = messages.disconnected(self.client.url, data), True
            if data.get("reason") != "stopped":
                log(f"disconnected: {data.get('reason')}")
        elif t == "server_restarted":
            self.message = messages.server_restarted(data)
        elif job is None:
            if t == "error":
                self.message = messages.failed("request", str(data.get("code", "")), str(data.get("message", "")))
        elif t == "queued":
            self.message = messages.queued(job.kind, data.get("position"))
        elif t == "started":
            self.message, self.progress = messages.running(job.kind), (0, 0)
        elif t == "plan":
            self.message = messages.planned(job.kind, data)
        elif t == "progress":
            self.progress = (int(data.get("step", 0)), int(data.get("total", 0)))
            self.message = messages.running(job.kind, *self.progress)
            self._step_preview(data.get("preview"))
        elif t in ("result", "error", "cancelled"):
            self._finish(job, ev)

    def _step_preview(self, prev: Any) -> None:
        if not isinstance(prev, dict) or not isinstance(prev.get("data"), bytes):
            return
        fmt = str(prev.get("format"))
        got: tuple[int, int, bytes] | None = None
        if fmt == "rgba8" and isinstance(prev.get("w"), int) and isinstance(prev.get("h"), int):
            w, h = prev["w"], prev["h"]
            if len(prev["data"]) == w * h * 4:
                got = (w, h, pixels.rgba_to_bgra(prev["data"]))
        elif fmt != "rgba8":
            got = decode_to_bgra(prev["data"])
        if got is None:
            log(f"cannot decode a {fmt} step preview ({len(prev['data'])} bytes)")
            if not self._preview_warned:  # once: a broken decoder would otherwise flood the user
                self._preview_warned = True
                self._notify_user(messages.preview_undecodable(fmt))
            return
        self.preview, self.preview_format = got, fmt
        self.preview_frames += 1

    def _finish(self, job: Pending, ev: Any) -> None:
        # The job leaves `pending` only after its result is stored: storing runs nested event loops
        # (waitForDone), and anything observing `pending` meanwhile must still see it busy.
        record: dict[str, Any] = {"job": job.job_id, "kind": job.kind, "status": ev.type, "entries": []}
        self.preview, self.progress = None, (0, 0)
        keep = False  # the job stays in resume.py's list: its result is fetched again later
        try:
            if ev.type == "result":
                doc = document.by_key(job.doc_key)
                if doc is None:
                    keep = True  # the server keeps the result: reopening the document fetches it again
                    raise ActionError("its document is closed; open it again to get the result")
                new = self.review.add_result(doc, job.request, ev.data, job.base)
                record["entries"] = [e.id for e in new]
                self._remember_seed(ev.data)
                self.message = messages.finished(job.request, ev.data, len(new))
            elif ev.type == "cancelled":
                self.message = f"{messages.kind_name(job.kind)}: cancelled"
            else:
                code, text = str(ev.data.get("code", "")), str(ev.data.get("message", ""))
                record["error"] = f"{code}: {text}"
                self._notify_user(messages.failed(job.kind, code, text))
        except ActionError as exc:
            record["error"] = str(exc)
            self._notify_user(f"{messages.kind_name(job.kind)}: {exc}")
        finally:
            record["message"] = self.message
            self.finished.append(record)
            self.pending.pop(job.job_id, None)
            if not keep:
                resume.forget(job.job_id)
            if self.client is not None:
                self.client.forget(job.job_id)

    def _remember_seed(self, result: dict[str, Any]) -> None:
        seed = (result.get("params") or {}).get("seed")
        if isinstance(seed, int):
            write_setting("last_seed", seed)

    def forget_closed_documents(self) -> None:
        """After a document closed: drop its in-memory history (reopening reads the file's)."""
        keys = {document.doc_key(d) for d in Krita.instance().documents()}
        self.review.forget_closed({k for k in keys if k})

    # --- UI plumbing -----------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A line in the docker's message area (no floating canvas message)."""
        self.message = text
        self._changed()

    def _notify_user(self, text: str) -> None:
        """Non-modal: the docker's message line plus Krita's floating canvas message (a modal box
        would block scripted/headless use)."""
        self.message = text
        log(text)
        win = Krita.instance().activeWindow()
        view = win.activeView() if win is not None else None
        if view is not None:
            try:
                from .qt import QtGui

                view.showFloatingMessage(text, QtGui.QIcon(), 4000, 1)
            except Exception:
                pass  # older Krita without showFloatingMessage: the docker line is enough
        self._changed()

    def _changed(self) -> None:
        for fn in list(self.listeners):
            try:
                fn()
            except Exception:
                traceback.print_exc()
