"""Live painting through the docker's Live tab (`live`), and the schedule-type picker (`schedule`).

Strokes are painted through Krita's API (a rectangle of the paint layer's pixels, as a brush dab
leaves them); the live layer, the applied layer and the projection are dumped as raw BGRA. Every
frame id the plugin sent and the times Live was switched off and the strokes ended go to the JSON, so
the test can count in the server's journal what the server received meanwhile.
"""

import asyncio
import os
import time

from krita import Krita

from . import kit
from .kit import SIZE

STROKE1, STROKE2 = (10, 10, 40, 40), (40, 40, 40, 40)  # x, y, w, h: the second over the dark square
SELECTION = (8, 8, 32, 32)
WHITE, BLACK, GREEN = bytes((255, 255, 255, 255)), bytes((0, 0, 0, 255)), bytes((0, 200, 0, 255))  # BGRA


def _session():
    return kit.controller().live


def _panel():
    return kit.docker().findChild(kit.qt().QtWidgets.QWidget, "sdbridge_live")


def wait_for(what, cond, timeout=180):
    deadline = time.time() + timeout
    while not cond() and time.time() < deadline:
        yield
    if not cond():
        s = _session()
        raise TimeoutError(f"{what}: not after {timeout}s (live: {s.state}, {s.counts})")


def pause(seconds):
    """Let Krita run (the plugin's timers, the network) for a while."""
    end = time.time() + seconds
    while time.time() < end:
        yield


def stroke(doc, rect, color):
    x, y, w, h = rect
    kit.node(doc, "drawing").setPixelData(kit.qt().QByteArray(color * (w * h)), x, y, w, h)
    doc.refreshProjection()


def live_layer(doc):
    import sdbridge.document as document

    return kit.node(doc, document.LIVE_NAME)


def live_pixels(doc):
    n = live_layer(doc)
    return kit.pixels(doc, n) if n is not None else b""


def settled(s):
    """Live is on, nothing in flight and no change waiting: the picture shows the document as it is."""
    return s.on and not s.frames and s.loop.dirty_since is None and s.shown is not None


def frame_after(doc, res, name, rect, color):
    """A stroke, then wait for the picture of a frame sent after it; dumps the live layer."""
    s = _session()
    sent = s.counts["sent"]
    stroke(doc, rect, color)
    yield from wait_for(name, lambda: s.shown is not None and s.shown.frame > sent and settled(s))
    kit.dump(f"live.{name}.bgra", live_pixels(doc))
    res[f"frame_{name}"] = s.shown.frame


def drop_connection():
    """Close the plugin's websocket under it, as a network drop does (the client reconnects by itself)."""
    client = kit.controller().client
    client._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(client._ws.close()))


def quiet_window(doc, res, tag):
    """Strokes for a while with Live off: the plugin must send nothing (the test also asks the server)."""
    s = _session()
    sent = s.counts["sent"]
    res[f"{tag}_t0"] = time.time()
    for i, color in enumerate((BLACK, GREEN, WHITE)):
        stroke(doc, (8 + 30 * i, 90, 20, 20), color)
        yield from pause(1.0)
    res[f"{tag}_t1"] = time.time()
    res[f"{tag}_sent"] = s.counts["sent"] - sent
    res[f"{tag}_pending"] = [j.id for j in kit.controller().client.jobs() if not j.done]


def watch_uploads():
    """Record how each image of a job goes on the wire (the shared client's upload de-duplication):
    `full`, `hash` only, or a `patch` (a changed rectangle); returns the list and the undo."""
    import sdbridge_common.uploads as uploads  # the plugin's vendored shared client

    sent, wire = [], uploads.Uploads.wire

    def recording(self, name, img):
        obj = wire(self, name, img)
        kind = "patch" if "base" in obj else "full" if ("data" in obj or "blob" in obj) else "hash"
        sent.append([name, kind, obj.get("x"), obj.get("y"), obj.get("w"), obj.get("h")])
        return obj

    uploads.Uploads.wire = recording
    return sent, lambda: setattr(uploads.Uploads, "wire", wire)


def sc_live(res):
    sent, unwatch = watch_uploads()
    try:
        yield from live_scenario(res, sent)
    finally:
        unwatch()
        res["uploads"] = sent


def edits(doc, res, sent):
    """A layer edit and a selection each send a frame; with a selection the frame inpaints it."""
    s = _session()
    n = s.counts["sent"]
    kit.node(doc, "drawing").setOpacity(160)
    yield from wait_for("layer edit", lambda: s.shown.frame > n and settled(s))
    res["frame_layer_edit"] = s.shown.frame - n
    n, before = s.counts["sent"], len(sent)
    kit.select(doc, *SELECTION)
    yield from wait_for("selection", lambda: s.shown.frame > n and settled(s))
    res["selection_uploads"] = sent[before:]
    kit.dump("live.selection.bgra", live_pixels(doc))
    n = s.counts["sent"]
    kit.trigger("deselect")
    yield from wait_for("deselected", lambda: s.shown.frame > n and settled(s))
    res["deselected_layer"] = live_layer(doc).bounds().width()


def live_scenario(res, sent):
    kit.settings(prompt="a red fox", live_preset="LCM 6 steps", live_strength=0.5, live_seed=77)
    doc = kit.new_doc("live")
    kit.dump("live.before.bgra", bytes(doc.pixelData(0, 0, SIZE, SIZE)))
    p = _panel()
    kit.docker().tabs.setCurrentWidget(p)  # the Live tab, as a user opens it
    kit.click(p.toggle)
    s = _session()
    res["toggle_on"] = [p.toggle.isChecked(), p.toggle.text(), s.on]
    yield from wait_for("first frame", lambda: settled(s))
    layer = live_layer(doc)
    top = [n for n in doc.rootNode().childNodes() if n.type() != "selectionmask"][-1]
    res["live_layer"] = {"name": layer.name(), "locked": layer.locked(), "visible": layer.visible(),
                         "on_top": top.name() == layer.name()}  # fmt: skip
    res["client_id"] = kit.controller().client.client_id
    kit.dump("live.first.bgra", live_pixels(doc))
    yield from frame_after(doc, res, "stroke1", STROKE1, WHITE)
    yield from frame_after(doc, res, "stroke2", STROKE2, GREEN)
    res["state_text"] = p.state.text()
    kit.docker().grab().save(os.path.join(kit.OUT, "live-docker.png"), "PNG")  # for people reviewing it
    Krita.instance().activeWindow().qwindow().grab().save(os.path.join(kit.OUT, "live-window.png"), "PNG")
    res["apply_enabled"] = p.apply.isEnabled()
    # Apply: the picture on the live layer becomes a normal layer under it, in one undo step.
    before = kit.layers(doc)
    shown = live_pixels(doc)
    kit.click(p.apply)
    applied = kit.node(doc, "live: a red fox (77)")
    res["applied"] = None if applied is None else {"type": applied.type(), "locked": applied.locked()}
    kit.dump("live.shown.bgra", shown)
    kit.dump("live.applied.bgra", kit.pixels(doc, applied) if applied is not None else b"")
    res["after_apply"] = kit.layers(doc)
    res["apply_message"] = kit.controller().message
    kit.trigger("edit_undo")
    doc.waitForDone()
    yield
    res["after_undo_matches"] = kit.layers(doc) == before
    res["after_undo"] = kit.layers(doc)
    yield from wait_for("after undo", lambda: settled(s))
    yield from edits(doc, res, sent)
    # Off: no more frames while painting goes on; the live layer goes.
    res["ids_before_off"] = list(s.sent_ids)
    kit.click(p.toggle)
    res["toggle_off"] = [p.toggle.isChecked(), p.toggle.text(), s.on]
    res["live_layer_after_off"] = live_layer(doc) is not None
    yield from quiet_window(doc, res, "off")
    # A dropped connection pauses Live; it goes on by itself after the reconnect when still on.
    kit.click(p.toggle)
    yield from wait_for("on again", lambda: settled(s))
    n, res["uploads_before_drop"] = s.counts["sent"], len(sent)
    drop_connection()
    yield from wait_for("paused by the drop", lambda: s.paused)
    res["paused_state"] = s.state
    stroke(doc, (20, 100, 20, 20), GREEN)
    yield from wait_for("resumed after the reconnect", lambda: not s.paused and settled(s) and s.shown.frame > n)
    res["resumed_frames"] = s.counts["sent"] - n
    # Off, then a drop and a reconnect: still no frames.
    kit.click(p.toggle)
    drop_connection()
    c = kit.controller()
    yield from wait_for("reconnected", lambda: c.client.connected is False)
    yield from wait_for("reconnected", lambda: c.client.connected)
    yield from quiet_window(doc, res, "off2")
    # Closing the document stops Live (the toggle says so too).
    kit.click(p.toggle)
    yield from wait_for("on for the close", lambda: settled(s))
    sent = s.counts["sent"]
    doc.setModified(False)  # no "save changes?" question
    doc.close()
    yield from wait_for("stopped by the close", lambda: not s.on)
    yield from pause(1.0)
    res["after_close"] = {"toggle": p.toggle.isChecked(), "state": s.state, "sent": s.counts["sent"] - sent}
    res["all_ids"] = list(s.sent_ids)
    res["counts"] = dict(s.counts)


def sc_schedule(res):
    """Pick a schedule type in the docker (Settings tab, next to the sampler) and generate."""
    kit.settings(sampler="DPM++ 2M", schedule="Automatic", steps=3, strength=1.0, seed=5)
    doc = kit.new_doc("schedule")
    c, d = kit.controller(), kit.docker()
    c.connect()
    yield from wait_for("connected", lambda: c.status.startswith("Connected"))
    offered = {}
    for sampler in ("Euler a", "DPM++ 2M"):
        d.sampler.setCurrentText(sampler)  # what choosing it in the list does
        kit.qt().QtWidgets.QApplication.processEvents()
        offered[sampler] = [d.schedule.itemText(i) for i in range(d.schedule.count())]
    res["offered"] = offered
    d.schedule.setCurrentText("Karras")
    res["setting"] = Krita.instance().readSetting("sdbridge", "schedule", "")
    yield from kit.run_action(res, "sdbridge_generate", doc)
    import sdbridge.document as document

    (entry,) = c.review.entries(doc)
    res["result_params"] = {k: entry.params.get(k) for k in ("sampler", "schedule", "steps")}
    res["logged"] = document.params_log(doc)[-1]["params"].get("schedule")
    res["job"] = res["finished"][0]["job"]


SCENARIOS = {"live": sc_live, "schedule": sc_schedule}
