"""Test mode of the dialog: with env SDBRIDGE_GIMP_DIALOG_TEST naming a JSON script, act like a user
inside the real GUI GIMP and record what the dialog shows. Without the variable nothing happens.

Why from inside the plug-in: the dialog is a GTK widget tree in this very process, so walking it
(`Gtk.Container.get_children`) finds every widget by its name, its mnemonic label (the label that
names it for screen readers too) and its value, with no accessibility bus, window manager or pixel
matching that could differ between machines. Screenshots come from the dialog's own X window
(`Gdk.pixbuf_get_from_window`), so they show exactly the dialog as drawn under Xvfb.

Script: `{"id": str, "steps": [step…], "on_preview": [step…]}`; steps run in order, one per timer
tick, each after the previous one is done:
  {"until": "connected" | "disconnected" | "idle" | "preview" | "started", "timeout": s}
  {"dump": name}   the widget tree's fields, buttons, status and progress → record["dumps"][name]
  {"shot": name}   a PNG of the dialog next to the script: <id>.<name>.png
  {"set": {argument: value}}   as if typed
  {"click": "ok" | "cancel" | "connect"}
`on_preview` steps run at once inside the first preview's update (so a fast job cannot end before
the screenshot). The record goes to <script>.out.json after every step.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import gi

gi.require_version("Atk", "1.0")
gi.require_version("Gdk", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Atk, Gdk, GLib, Gtk  # noqa: E402

ENV = "SDBRIDGE_GIMP_DIALOG_TEST"
DEFAULT_WAIT_S = 60.0


class DialogRun(Protocol):
    """What the probe needs of `interactive.DialogRun` (not imported: the probe is not its dependency)."""

    form: Any
    listeners: list[Callable[[str, dict[str, Any]], None]]

    @property
    def connected(self) -> bool: ...

    @property
    def running(self) -> bool: ...


def attach(run: DialogRun) -> None:
    path = os.environ.get(ENV)
    if path and os.path.isfile(path):
        Probe(run, path)


def walk(widget: Gtk.Widget) -> list[Gtk.Widget]:
    out = [widget]
    if isinstance(widget, Gtk.Container):
        for child in widget.get_children():
            out += walk(child)
    return out


def _value(w: Gtk.Widget) -> Any:
    if isinstance(w, Gtk.TextView):
        buf = w.get_buffer()
        return buf.get_text(buf.get_start_iter(), buf.get_end_iter(), False)
    if isinstance(w, Gtk.ComboBox):
        return w.get_active_id()
    if isinstance(w, Gtk.ToggleButton):
        return w.get_active()
    if isinstance(w, Gtk.SpinButton | Gtk.Range):
        return w.get_value()
    if isinstance(w, Gtk.Entry):
        return w.get_text()
    if isinstance(w, Gtk.Label):
        return w.get_text()
    return None


def _labelled_by(w: Gtk.Widget) -> list[str]:
    """The names of the labels a screen reader announces for `w` (its ATK labelled-by relation)."""
    relation = w.get_accessible().ref_relation_set().get_relation_by_type(Atk.RelationType.LABELLED_BY)
    return [target.get_name() for target in relation.get_target()] if relation is not None else []


def _rect(w: Gtk.Widget, dialog: Gtk.Dialog) -> list[int] | None:
    """Where `w` is in the dialog's window (x, y, w, h): to find it in a screenshot."""
    at = w.translate_coordinates(dialog, 0, 0)
    return [at[0], at[1], w.get_allocated_width(), w.get_allocated_height()] if at else None


def dump(dialog: Gtk.Dialog) -> dict[str, Any]:
    """Every widget named sdbridge-…: type, label, what a screen reader names it, value, choices, state."""
    widgets = walk(dialog)
    labels = {id(lab.get_mnemonic_widget()): lab.get_text() for lab in widgets if isinstance(lab, Gtk.Label)}
    fields: dict[str, Any] = {}
    for w in widgets:
        name = w.get_name()
        if not name.startswith("sdbridge-"):
            continue
        info: dict[str, Any] = {
            "type": type(w).__name__,
            "label": labels.get(id(w)),
            "labelled_by": _labelled_by(w),
            "value": _value(w),
            "sensitive": w.is_sensitive(),
            "visible": w.is_visible(),
            "tooltip": w.get_tooltip_text(),
            "rect": _rect(w, dialog),
        }
        if isinstance(w, Gtk.ComboBox):
            model = w.get_model()
            info["items"] = [[row[1], row[0]] for row in model]  # ComboBoxText columns: text, id
        if isinstance(w, Gtk.TextView):
            info["wrap"] = w.get_wrap_mode().value_nick
        if isinstance(w, Gtk.Image):
            pix = w.get_pixbuf()
            info["pixbuf"] = [pix.get_width(), pix.get_height()] if pix is not None else None
        fields[name.removeprefix("sdbridge-")] = info
    buttons = [{"label": b.get_label(), "sensitive": b.is_sensitive()} for b in widgets if isinstance(b, Gtk.Button)]
    return {"title": dialog.get_title(), "fields": fields, "buttons": buttons}


def _painted(dialog: Gtk.Dialog, wait_s: float = 5.0) -> None:
    """Wait until GTK has drawn the dialog's latest changes: the grab reads the X window, and GTK
    paints on its frame clock, not when a label or image is set (no pending events ≠ painted)."""
    clock = dialog.get_frame_clock()
    done: list[bool] = []
    handler = clock.connect("after-paint", lambda _clock: done.append(True))
    dialog.queue_draw()
    deadline = time.monotonic() + wait_s
    try:
        context = GLib.MainContext.default()
        while not done and time.monotonic() < deadline:
            if not context.iteration(False):
                time.sleep(0.005)
    finally:
        clock.disconnect(handler)
    dialog.get_display().sync()  # the X server has carried out the drawing before we read it back


class Probe:
    def __init__(self, run: DialogRun, path: str) -> None:
        with open(path, encoding="utf-8") as fh:
            script = json.load(fh)
        self.run, self.path = run, path
        self.prefix = os.path.join(os.path.dirname(path), str(script.get("id", "dialog")))
        self.steps: list[dict[str, Any]] = list(script.get("steps") or [])
        self.on_preview: list[dict[str, Any]] = list(script.get("on_preview") or [])
        self.record: dict[str, Any] = {"opened": True, "dumps": {}, "shots": [], "events": [], "errors": []}
        self.since = time.monotonic()
        run.listeners.append(self._event)
        self._save()
        GLib.timeout_add(100, self._tick)

    def _save(self) -> None:
        with open(self.path + ".out.json", "w", encoding="utf-8") as fh:
            json.dump(self.record, fh, indent=1)

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        self.record["events"].append({"kind": kind, **{k: v for k, v in data.items() if k != "limits"}})
        if kind == "preview" and self.on_preview:
            steps, self.on_preview = self.on_preview, []
            for step in steps:
                self._do(step)
        self._save()

    def _ready(self, what: str) -> bool:
        kinds = [e["kind"] for e in self.record["events"]]
        return {
            "connected": self.run.connected,
            "disconnected": any(e["kind"] == "status" and e["error"] for e in self.record["events"]),
            "idle": not self.run.running,
            "preview": "preview" in kinds,
            "started": "started" in kinds,
        }[what]

    def _tick(self) -> bool:
        if not self.steps:
            return False
        step = self.steps[0]
        if "until" in step and not self._ready(step["until"]):
            if time.monotonic() - self.since < float(step.get("timeout", DEFAULT_WAIT_S)):
                return True
            self.record["errors"].append(f"timed out waiting for {step['until']}")
            self.steps = [{"click": "cancel"}, {"click": "cancel"}]  # end the dialog; the test fails on the error
            step = self.steps[0]
        self.steps.pop(0)
        self._do(step)
        self.since = time.monotonic()
        self._save()
        return bool(self.steps)

    def _do(self, step: dict[str, Any]) -> None:
        form = self.run.form
        try:
            if "dump" in step:
                self.record["dumps"][step["dump"]] = dump(form.dialog)
            elif "shot" in step:
                self.record["shots"].append(self._shot(form.dialog, step["shot"]))
            elif "set" in step:
                for name, value in step["set"].items():
                    form.set_value(name, value)
            elif "click" in step:
                cancel = form.dialog.get_widget_for_response(Gtk.ResponseType.CANCEL)
                {"ok": form.ok, "connect": form.connect_button, "cancel": cancel}[step["click"]].clicked()
        except Exception as exc:  # a broken step is recorded, the dialog goes on
            self.record["errors"].append(f"{step}: {type(exc).__name__}: {exc}")

    def _shot(self, dialog: Gtk.Dialog, name: str) -> str:
        _painted(dialog)
        window = dialog.get_window()
        pixbuf = Gdk.pixbuf_get_from_window(window, 0, 0, window.get_width(), window.get_height())
        path = f"{self.prefix}.{name}.png"
        pixbuf.savev(path, "png", [], [])
        return os.path.basename(path)
