"""The plugin's brain inside Krita: settings, the client, jobs in flight and applying results.

UI-independent (the docker observes it through `listeners`); the network runs in the client's
worker thread and a 50 ms QTimer on the UI thread drains its events, so nothing here blocks Krita.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from krita import Krita  # type: ignore[import-not-found]

from . import document
from ._common import actions, client, results, settings
from .qt import QTimer, decode_to_bgra

Settings = settings.Settings
ActionError = actions.ActionError


@dataclass
class Pending:
    job_id: str
    kind: str
    doc: Any
    request: Any
    canvas_size: tuple[int, int]
    submitted: float = field(default_factory=time.monotonic)


def read_settings() -> Settings:
    app = Krita.instance()
    return Settings.load(lambda key, default: app.readSetting(settings.GROUP, key, default))


def write_setting(key: str, value: Any) -> None:
    Krita.instance().writeSetting(settings.GROUP, key, settings.to_string(value))


class Controller:
    def __init__(self, deps_error: str | None = None) -> None:
        self.deps_error = deps_error
        self.client: Any = None
        self.pending: dict[str, Pending] = {}
        self.status = "not connected"
        self.message = deps_error or ""
        self.preview: tuple[int, int, bytes] | None = None  # (w, h, BGRA) of the latest step preview
        self.progress: tuple[int, int] = (0, 0)
        self.finished: list[dict[str, Any]] = []  # for tests/scripts: {job, kind, status, layers, error}
        self.listeners: list[Callable[[], None]] = []
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
        if self.client is not None and (self.client.url != s.url or self.client.token != token):
            self.client.stop(timeout=0.5)
            self.client = None
        if self.client is None:
            self.client = client.Client(s.url, token, client_name="krita-plugin/0.1").start()
            self.status = f"connecting to {s.url}"
            self._timer.start()
        return True

    def connect(self) -> None:
        s = read_settings()
        if self.ensure_client(s):
            self.client.reconnect_now()
        self._changed()

    def shutdown(self) -> None:
        self._timer.stop()
        if self.client is not None:
            self.client.stop(timeout=1.0)
            self.client = None

    # --- actions ---------------------------------------------------------------------------

    def run_action(self, kind: str) -> str | None:
        """Plan and submit a job for the active document; user errors go to the status line."""
        try:
            if kind == "cancel":
                self.cancel_all()
                return None
            doc = document.active_document()
            if doc is None:
                raise ActionError("open a document first")
            s = read_settings()
            if not self.ensure_client(s):
                return None
            canvas = document.read_canvas(doc)
            request = actions.PLANNERS[kind](canvas, s, self.welcome)
            job_id = self.client.submit(request)
            self.pending[job_id] = Pending(job_id, kind, doc, request, (canvas.w, canvas.h))
            self.message = f"{kind}: submitted"
            self._changed()
            return job_id
        except ActionError as exc:
            self._notify_user(f"{kind}: {exc}")
        except Exception as exc:  # never let an action traceback vanish into Krita's log only
            traceback.print_exc()
            self._notify_user(f"{kind} failed: {type(exc).__name__}: {exc}")
        return None

    def cancel(self, job_id: str) -> None:
        if self.client is not None:
            self.client.cancel(job_id)

    def cancel_all(self) -> None:
        if self.client is not None:
            for job_id in list(self.pending):
                self.client.cancel(job_id)
        self.message = "cancelling" if self.pending else "nothing to cancel"
        self._changed()

    def queue(self) -> list[Any]:
        """Snapshots of this session's unfinished jobs, oldest first (for the docker's queue list)."""
        if self.client is None:
            return []
        return [j for j in self.client.jobs() if not j.done and j.id in self.pending]

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
                self._notify_user(f"could not apply {ev.type}: {type(exc).__name__}: {exc}")
        self._changed()

    def _event(self, ev: Any) -> None:
        t = ev.type
        if t == "connected":
            w = ev.data
            self.status = f"connected: {w.get('server', '?')} on {w.get('device', '?')}"
        elif t == "disconnected":
            d = ev.data
            retry = f", retrying in {d['retry_in']:.0f}s" if d.get("retry_in") else ""
            self.status = f"disconnected ({d.get('reason')}){retry}"
        elif t == "queued":
            self.message = f"queued (position {ev.data.get('position')})"
        elif t == "started":
            self.message, self.progress = "running", (0, 0)
        elif t == "plan":
            self.message = f"running: {ev.data.get('tiles', '?')} tiles"
        elif t == "progress":
            self.progress = (int(ev.data.get("step", 0)), int(ev.data.get("total", 0)))
            prev = ev.data.get("preview")
            if isinstance(prev, dict) and isinstance(prev.get("data"), bytes):
                self.preview = decode_to_bgra(prev["data"]) or self.preview
        elif t in ("result", "error", "cancelled"):
            self._finish(ev)

    def _finish(self, ev: Any) -> None:
        # The job leaves `pending` only after its result is applied: applying runs nested event
        # loops (waitForDone), and anything observing `pending` meanwhile must still see it busy.
        job = self.pending.get(ev.job_id) if ev.job_id else None
        if job is None:
            if ev.type == "error":
                self.message = f"error: {ev.data.get('code')}: {ev.data.get('message')}"
            return
        record: dict[str, Any] = {"job": job.job_id, "kind": job.kind, "status": ev.type, "layers": []}
        self.preview, self.progress = None, (0, 0)
        if ev.type == "result":
            plan = results.plan_result(
                job.request, ev.data, job.canvas_size[0], job.canvas_size[1], document.decode_result_image
            )
            try:
                document.apply_result(job.doc, plan)
            except Exception:
                self.pending.pop(job.job_id, None)
                raise
            record["layers"] = [p.name for p in plan.layers]
            self._remember_seed(ev.data)
            self.message = f"{job.kind}: done ({', '.join(record['layers'])})"
        elif ev.type == "cancelled":
            self.message = f"{job.kind}: cancelled"
        else:
            record["error"] = f"{ev.data.get('code')}: {ev.data.get('message')}"
            self._notify_user(f"{job.kind} failed: {record['error']}")
        self.finished.append(record)
        self.pending.pop(job.job_id, None)
        if self.client is not None:
            self.client.forget(job.job_id)

    def _remember_seed(self, result: dict[str, Any]) -> None:
        seed = (result.get("params") or {}).get("seed")
        if isinstance(seed, int):
            write_setting("last_seed", seed)

    # --- UI plumbing -----------------------------------------------------------------------

    def _notify_user(self, text: str) -> None:
        """Non-modal: a docker status line plus Krita's floating canvas message (a modal box would
        block scripted/headless use)."""
        self.message = text
        print(f"sdbridge: {text}")
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
