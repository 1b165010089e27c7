"""An interactive run: the dialog, a live connection to the server, and the job run from the dialog.

The dialog connects as soon as it opens (the drop-downs come from the server's `welcome`; an
unreachable server is said in the status line, and the client keeps retrying). OK starts the job
with the dialog still open: the preview and step count follow it, Cancel cancels it on the server
and lets the user edit and try again. When the result arrives it is applied (one undo step) and the
dialog closes. Everything runs on the plug-in's main thread from one GLib timer; the network is the
shared client's worker thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, Gtk  # noqa: E402

from . import cancel_guard, dialog, image_io, logic, prefs, remote  # noqa: E402
from ._common import ActionError, actions  # noqa: E402
from .procs import ProcSpec  # noqa: E402

TICK_MS = 50
CANCELLED = "Cancelled: the server stopped the job. Change what you like and press OK to run it again."
Listener = Callable[[str, dict[str, Any]], None]


class DialogRun:
    """One dialog from opening to closing. `run()` returns the result layer, or None (cancelled)."""

    def __init__(self, spec: ProcSpec, image: Gimp.Image, settings_path: str) -> None:
        self.spec, self.image, self.settings_path = spec, image, settings_path
        self.settings = prefs.load(settings_path)
        self.form = dialog.Form(spec, prefs.to_values(spec, self.settings), self.settings.seed)
        self.formats = dialog.decodable_formats()
        self.remote: remote.Remote | None = None
        self.welcome: dict[str, Any] | None = None
        self.job: str | None = None
        self.plan: logic.Plan | None = None
        self.canvas: logic.Canvas | None = None
        self.guard: cancel_guard.Guard | None = None
        self.deadline = 0.0
        self.layer: Gimp.Layer | None = None
        self.used: dict[str, Any] = {}  # the values of the job that was applied
        self.listeners: list[Listener] = []  # the test probe's view of what happens
        self.loop = GLib.MainLoop()
        self.form.dialog.connect("response", self._response)
        self.form.connect_button.connect("clicked", lambda _b: self.reconnect())
        self.form.fields["server-url"].connect("activate", lambda _e: self.reconnect())

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self) -> Gimp.Layer | None:
        self.form.dialog.show_all()
        self.form.set_running(False, can_start=False)
        self.reconnect()
        timer = GLib.timeout_add(TICK_MS, self._tick)
        try:
            self.loop.run()
        finally:
            GLib.source_remove(timer)
            self._end_job()
            if self.remote is not None:
                self.remote.close()
            self.form.dialog.destroy()
        return self.layer

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(kind, data)

    def _status(self, text: str, error: bool = False) -> None:
        self.form.set_status(text, error)
        self._emit("status", {"text": text, "error": error})

    @property
    def connected(self) -> bool:
        return self.welcome is not None

    @property
    def running(self) -> bool:
        return self.job is not None

    def reconnect(self) -> None:
        """(Re)connect with the URL and token in the dialog."""
        if self.running:
            return
        if self.remote is not None:
            self.remote.close()
            self.remote = None
        self.welcome = None
        self.form.set_running(False, can_start=False)
        url = self.form.value("server-url")
        try:
            me = prefs.client_id(os.path.dirname(self.settings_path))
            self.remote = remote.Remote(url, self.form.value("token"), preview_formats=self.formats, client_id=me)
            self.remote.start()
        except ActionError as exc:
            self._status(str(exc), error=True)
            return
        self._status(f"Connecting to {url} …")

    # --- events ---------------------------------------------------------------------------------

    def _tick(self) -> bool:
        if self.remote is None:
            return True
        for ev in self.remote.poll():
            self._connection_event(ev)
            if self.job is None:
                continue
            try:
                shown = self.remote.follow(ev, self.job)
            except ActionError as exc:
                self._job_ended(str(exc), error=True)
                continue
            problem = remote.failure(shown) if shown is not None else None
            if problem == remote.CANCELLED:
                self._job_ended(CANCELLED, error=False)
            elif problem is not None:
                self._job_ended(problem, error=True)
            elif shown is not None:
                self._job_event(shown)
        if self.running and time.monotonic() > self.deadline:
            self.remote.cancel(self.job or "")
            self._job_ended(remote.timed_out(float(self.form.value("timeout"))), error=True)
        return True

    def _connection_event(self, ev: remote.Event) -> None:
        assert self.remote is not None
        if ev.type == "connected":
            self.welcome = dict(ev.data)
            self.form.set_options(self.welcome)
            self.form.set_running(self.running, can_start=True)
            where = f"{ev.data.get('server', 'sdbridge')} on {ev.data.get('device', '?')}"
            self._status(f"Connected to {where} at {self.remote.url}.")
            self._emit("connected", self.welcome)
        elif ev.type == "disconnected" and ev.data.get("reason") != "stopped":
            self.welcome = None
            self.form.set_running(self.running, can_start=False)
            retry = ev.data.get("retry_in")
            again = f" Trying again in {retry:.0f} s." if isinstance(retry, int | float) else ""
            self._status(remote.connection_problem(self.remote.url, ev.data) + again, error=True)
        elif ev.type == "server_restarted":
            self._status(remote.restarted_message(ev.data))

    def _job_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "queued":
            pos = int(ev.get("position") or 0)
            self.form.show_progress("Queued" + (f" ({pos} ahead)" if pos else ""), None)
        elif kind == "started":
            self.form.show_progress("Starting…", 0.0)
        elif kind == "reconnecting":
            self.form.show_progress("Connection lost, reconnecting…", None)
        elif kind == "progress":
            step, total = int(ev.get("step") or 0), max(1, int(ev.get("total") or 1))
            self.form.show_progress(f"Step {step} / {total}", step / total)
            Gimp.progress_update(step / total)
            preview = ev.get("preview")
            pixbuf = dialog.decode_preview(preview) if isinstance(preview, dict) else None
            if pixbuf is not None:
                self.form.show_preview(pixbuf)
                info = {"format": preview["format"], "w": pixbuf.get_width(), "h": pixbuf.get_height()}
                self._emit("preview", {**info, "step": step, "total": total})
        elif kind == "result":
            self._apply(ev)

    # --- the job --------------------------------------------------------------------------------

    def _response(self, _dialog: Gtk.Dialog, response: int) -> None:
        if response == Gtk.ResponseType.OK:
            self._start()
        elif self.running and response == Gtk.ResponseType.CANCEL:
            assert self.remote is not None and self.job is not None
            self.remote.cancel(self.job)  # the server answers `cancelled`: back to editing then
            self._status("Cancelling…")
        else:  # Cancel while editing, or the window closed (also while running: the job is cancelled)
            if self.running and self.remote is not None and self.job is not None:
                self.remote.cancel(self.job)
            self.loop.quit()

    def _start(self) -> None:
        if self.running or self.remote is None or self.welcome is None:
            return
        values = self.form.values()
        try:
            canvas = image_io.read_canvas(self.image)  # now: the selection may have changed since opening
            logic.plan_job(self.spec, values, canvas)  # local mistakes first (empty prompt, no selection)
            actions.require_kind(self.spec.kind, self.welcome)
            logic.check_model(values, self.welcome)
            plan = logic.plan_job(self.spec, values, canvas, actions.max_pixels(self.welcome))
        except ActionError as exc:
            self._status(str(exc), error=True)
            return
        # Remember the choices now: a failed or cancelled job must not lose the prompt.
        self.settings = prefs.from_values(self.spec, values, self.settings)
        prefs.save(self.settings_path, self.settings)
        self.plan, self.canvas, self.used = plan, canvas, values
        self.job = self.remote.submit(plan.request)
        # GIMP's progress Cancel (image window) kills this process; the guard then cancels the job.
        token = str(values.get("token") or "")
        self.guard = cancel_guard.spawn(self.remote.url, token, self.job, self.remote.client.client_id)
        self.deadline = time.monotonic() + float(values.get("timeout") or 600)
        self.form.set_running(True, can_start=True)
        self.form.show_progress("Sending…", None)
        Gimp.progress_init(f"sdbridge: {self.spec.title}")
        self._status(f"Running {self.spec.title}…")
        self._emit("started", {"job": self.job})

    def _end_job(self) -> None:
        if self.guard is not None:
            self.guard.release()
        self.guard, self.job = None, None

    def _job_ended(self, message: str, error: bool) -> None:
        self._end_job()
        self.form.set_running(False, can_start=self.connected)
        self.form.show_progress("", 0.0)
        self._status(message, error=error)
        self._emit("ended", {"message": message, "error": error})

    def _apply(self, result: dict[str, Any]) -> None:
        assert self.plan is not None and self.canvas is not None
        try:
            self.layer = image_io.apply_result(self.image, self.spec, self.plan, result, self.canvas)
        except ActionError as exc:
            self._job_ended(str(exc), error=True)
            return
        seed = (result.get("params") or {}).get("seed")
        if isinstance(seed, int) and seed >= 0:  # the seed used: "Random" off reproduces this result
            self.settings = self.settings.replace(seed=seed)
            prefs.save(self.settings_path, self.settings)
        self._end_job()
        self._emit("applied", {"layer": self.layer.get_name()})
        self.loop.quit()
