"""Live painting in Krita: while Live is on, every change of the document (strokes, layer edits, a new
selection) sends a frame, and the newest picture lands on a locked layer of its own at the top,
`[sdbridge live]`. "Apply" copies that picture to a normal layer.

Changes are found by polling a cheap fingerprint of the document (the layer tree, a CRC of each
visible layer's pixels, the selection) on a QTimer: Krita's Python API has no "the image changed"
signal. When a frame goes is `plugins/common/live.py`'s adaptive debounce; the client sends only what
changed since the last frame (a hash or a changed rectangle, plugins/common/uploads.py), and the
server keeps at most one pending frame per client, answering the ones a newer frame replaced with
`superseded` (normal, never shown as an error). Live stops when toggled off or its document closes,
and pauses while the connection is down (it goes on by itself after the reconnect if still on).
"""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass
from typing import Any

from . import document
from ._common import actions, geometry, live, messages, pixels
from .controller import Controller, read_settings, write_setting
from .qt import QTimer

LIVE_NAME = document.LIVE_NAME
POLL_MS = 100  # the fingerprint's shortest period; larger documents are polled less often (see _tick)


@dataclass(frozen=True)
class Shown:
    """The picture on the live layer: what Apply copies (kept after Live is off)."""

    doc_key: str  # its document (document.by_key)
    rect: geometry.Rect
    rgba: bytes
    seed: int
    prompt: str
    frame: int  # which frame (1 = the first sent) it answers


def fingerprint(doc: Any) -> tuple[Any, ...]:
    """What a frame depends on, cheaply: size, every layer's place and properties, a CRC of the pixels of
    every visible layer (a group's through its members), the selection. The plugin's own layers are left
    out: a live result must not trigger the next frame."""
    parts: list[Any] = [doc.width(), doc.height()]

    def walk(node: Any) -> None:
        for n in node.childNodes():
            name, kind = n.name(), n.type()
            if name in document.PLUGIN_LAYERS or kind == "selectionmask":
                continue
            parts.append((str(n.uniqueId()), name, kind, n.visible(), n.opacity(), n.blendingMode()))
            if not n.visible():
                continue
            if kind != "grouplayer":
                b = n.bounds()
                parts.append(zlib.crc32(bytes(n.pixelData(b.x(), b.y(), b.width(), b.height()))))
            walk(n)

    walk(doc.rootNode())
    sel = doc.selection()
    if sel is not None and sel.width() > 0 and sel.height() > 0:
        x, y, w, h = sel.x(), sel.y(), sel.width(), sel.height()
        parts.append((x, y, w, h, zlib.crc32(bytes(sel.pixelData(x, y, w, h)))))
    return tuple(parts)


class LiveSession:
    """Live painting for one document at a time; one per plugin (the docker's Live tab drives it)."""

    def __init__(self, controller: Controller) -> None:
        self.c = controller
        self.on = False
        self.key: str | None = None  # the document's id: a kept wrapper would outlive a closed document
        self.loop = live.LiveLoop()
        self.frames: dict[str, tuple[int, tuple[int, int]]] = {}  # in flight: id -> (frame number, canvas size)
        self.sent_ids: list[str] = []  # every frame sent since the plugin started (scripts, tests)
        self.counts = {"sent": 0, "shown": 0, "superseded": 0, "errors": 0}
        self.shown: Shown | None = None
        self.state = "Off"
        self.paused = False  # on, but the connection is down
        self._print: tuple[Any, ...] | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._tick)
        controller.observers.append(self._event)

    @classmethod
    def of(cls, controller: Controller) -> LiveSession:
        """The controller's session (every docker window shows the same one)."""
        if controller.live is None:
            controller.live = cls(controller)
        return controller.live

    # --- on / off ---------------------------------------------------------------------------------

    def start(self) -> bool:
        doc = document.active_document()
        if doc is None:
            self.c.say("Live: open a document first")
            return False
        if not self.c.ensure_client(read_settings()):
            return False
        if self.on:
            self.stop("switched to another document")
        key = document.doc_key(doc, create=True)
        self.on, self.key, self.paused, self._print = True, key, not self.c.client.connected, None
        self.loop = live.LiveLoop(latency=self.loop.latency)  # keep what was learnt about frame times
        self.loop.changed(time.monotonic())  # the first frame goes at once
        self.state = "On: waiting for the server" if self.paused else "On"
        self.c.say("Live on: paint, and the picture follows")
        self._timer.start(0)
        return True

    def stop(self, why: str = "") -> None:
        """No more frames: the ones in flight are cancelled and the live layer goes (Apply still copies
        the last picture while its document is open)."""
        if not self.on:
            return
        self.on = False
        self._timer.stop()
        self._drop_frames(cancel=True)
        doc, self.key = document.by_key(self.key), None
        if doc is not None:
            document.remove_preview(doc, LIVE_NAME)
        self.state = "Off" + (f": {why}" if why else "")
        self.c.say("Live off" + (f": {why}" if why else ""))

    def new_seed(self) -> int:
        seed = random.randrange(1, 2**31 - 1)
        write_setting("live_seed", seed)
        self.changed()
        return seed

    def changed(self) -> None:
        """A setting the frames use changed (strength, preset, seed, prompt): the next frame is due."""
        if self.on:
            self.loop.changed(time.monotonic())

    # --- apply --------------------------------------------------------------------------------------

    def apply(self) -> Any:
        """The picture on the live layer as a new normal layer `live: prompt (seed)`, under the preview
        layers (one Edit ▸ Undo removes it). Raises ActionError when there is none."""
        shown = self.shown
        if shown is None:
            raise actions.ActionError("no live picture yet: switch Live on and paint")
        doc = document.by_key(shown.doc_key)
        if doc is None:
            raise actions.ActionError("the live picture's document was closed")
        if shown.rect.right > doc.width() or shown.rect.bottom > doc.height():
            raise actions.ActionError("the canvas shrank since the live picture was made")
        name = f"live: {shown.prompt.strip() or 'untitled'} ({shown.seed})"
        return document.add_layer(doc, name, shown.rect, shown.rgba)

    # --- the loop ------------------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.on:
            return
        client = self.c.client
        if client is None:  # the plugin shut down (Krita is quitting): leave the document alone
            self.on, self.state = False, "Off"
            return
        doc = document.by_key(self.key)
        if doc is None:
            self.stop("its document was closed")
            return
        began = time.monotonic()
        try:
            now_print = fingerprint(doc)
        except Exception as exc:  # a layer Krita cannot read right now: try again next time
            now_print = self._print
            self.state = f"On: cannot read the document ({type(exc).__name__})"
        cost = time.monotonic() - began
        now = time.monotonic()
        if now_print != self._print:
            self._print = now_print
            self.loop.changed(now)
        if client.connected and not self.paused and self.loop.due(now):
            self._send(doc, now)
        if self.on:  # polling costs at most about a fifth of the time, however large the document
            self._timer.start(max(POLL_MS, int(cost * 5000)))

    def _send(self, doc: Any, now: float) -> None:
        if "live" not in ((self.c.welcome or {}).get("features") or ()):
            self.stop("this server has no live painting; update it")
            return
        s = read_settings()
        try:
            canvas = document.read_canvas(doc)
            request = live.live_request(canvas, s, self.c.welcome)
        except actions.ActionError as exc:
            self.loop.dirty_since = None  # nothing went; wait for the next change
            self.state = f"On: {exc}"
            self.c.say(f"Live: {exc}")
            return
        job_id = self.c.client.submit(request)
        self.loop.sent(job_id, now)
        self.counts["sent"] += 1
        self.frames[job_id] = (self.counts["sent"], (canvas.w, canvas.h))
        self.sent_ids.append(job_id)

    def _drop_frames(self, cancel: bool) -> None:
        """Forget the frames in flight (cancel them first while the server can still hear it)."""
        client = self.c.client
        for job_id in self.loop.stop():
            self.frames.pop(job_id, None)
            if client is not None:
                state = client.job(job_id)
                if cancel and state is not None and state.status != "pending":  # never sent: nothing to stop
                    client.cancel(job_id)
                client.forget(job_id)
        self.frames.clear()

    # --- events (the controller hands every client event here first) ----------------------------------

    def _event(self, ev: Any) -> bool:
        if ev.type == "connected" and self.on and self.paused:
            self.paused, self.state = False, "On"
            self.loop.changed(time.monotonic())  # the server may have lost the last image: a frame in full
        elif ev.type == "disconnected" and self.on and not self.paused:
            self.paused, self.state = True, "On: waiting for the server"
            self._drop_frames(cancel=False)  # never re-sent or fetched after the reconnect: a new one goes
        if ev.job_id is None or ev.job_id not in self.frames:
            return False
        number, size = self.frames[ev.job_id]
        if ev.type not in ("result", "superseded", "error", "cancelled"):
            return True  # queued / started / progress of a frame: the live layer is the preview
        del self.frames[ev.job_id]
        now = time.monotonic()
        self.loop.finished(ev.job_id, now, produced=ev.type == "result")
        if self.c.client is not None:
            self.c.client.forget(ev.job_id)
        if ev.type == "superseded":
            self.counts["superseded"] += 1
        elif ev.type == "error":
            self.counts["errors"] += 1
            code, text = str(ev.data.get("code", "")), str(ev.data.get("message", ""))
            self.state = "On: " + messages.failed("live", code, text)
            self.c.say(self.state)
        elif ev.type == "result" and self.on:
            self._show(ev.data, number, size)
        return True

    def _show(self, result: dict[str, Any], number: int, size: tuple[int, int]) -> None:
        doc = document.by_key(self.key)
        images = result.get("images") or []
        if doc is None or not images or (doc.width(), doc.height()) != size:
            return  # the canvas changed size meanwhile: the next frame brings a fitting picture
        img = images[0]
        w, h, rgba = document.decode_result_image(img)
        rect = geometry.Rect(int(img.get("x", 0)), int(img.get("y", 0)), w, h).clamped(*size)
        if rect.is_empty:
            return
        if (rect.w, rect.h) != (w, h):
            rgba = pixels.crop(rgba, w, 4, 0, 0, rect.w, rect.h)
        document.show_preview(doc, rect, pixels.rgba_to_bgra(rgba), LIVE_NAME)
        params = result.get("params") or {}
        seed = params.get("seed")
        self.shown = Shown(self.key or "", rect, rgba, seed if isinstance(seed, int) else read_settings().live_seed,
                           str(params.get("prompt", "")), number)  # fmt: skip
        self.counts["shown"] += 1
        self.state = f"On: frame {number} shown, {self.loop.latency:.2f} s a frame"
