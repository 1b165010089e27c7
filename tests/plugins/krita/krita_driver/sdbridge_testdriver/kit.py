"""Helpers of the test driver: settings, documents, layer readback, waiting, the docker's widgets."""

import json
import os
import time

from krita import Krita

OUT = os.environ.get("SDB_TEST_OUT")
SCENARIOS = [s for s in os.environ.get("SDB_TEST_SCENARIOS", "").split(",") if s]
URL = os.environ.get("SDB_TEST_URL", "")
T0 = time.time()
SIZE = 128  # small canvases keep CPU diffusion with the tiny model fast
ACTIONS = ["generate", "outpaint", "face", "restore", "upscale", "cancel"]


def qt():
    """The plugin's own Qt shim: PyQt5 under Krita 5, PyQt6 under Krita 6."""
    from sdbridge import qt as shim

    return shim


def controller():
    import sdbridge  # the plugin package, importable by its pykrita name

    return sdbridge.CONTROLLER


def write_json(name, obj):
    with open(os.path.join(OUT, name), "w") as fh:
        json.dump(obj, fh, indent=1, default=str)


def dump(name, data):
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(data)


def settings(**kw):
    app = Krita.instance()
    base = {
        "url": URL, "prompt": "a red fox", "negative": "", "seed": 42, "fixed_seed": "true", "steps": 2,
        "strength": 1.0, "width": 0, "height": 0, "batch": 1, "outpaint_side": "right", "outpaint_pixels": 64,
        "upscale_scale": 2.0, "upscale_strength": 0.3, "sampler": "Euler a", "face_strength": 0.5,
    }  # fmt: skip
    base.update(kw)
    for k, v in base.items():
        app.writeSetting("sdbridge", k, str(v).lower() if isinstance(v, bool) else str(v))
    d = docker()
    if d is not None:
        d.load_settings()  # what a user sees after changing the settings from a script


def plugin_summary():
    c = controller()
    import sdbridge

    return {
        "deps_error": c.deps_error if c else "plugin not loaded",
        "actions": {f"sdbridge_{a}": Krita.instance().action(f"sdbridge_{a}") is not None for a in ACTIONS},
        "qt6": qt().QT6,
        "krita_version": Krita.instance().version(),
        "plugin_file": sdbridge.__file__,
    }


def docker():
    found = [d for d in Krita.instance().dockers() if d.objectName() == "sdbridge_docker"]
    return found[0] if found else None


def docker_state():
    """The sdbridge docker Krita made from the plugin's factory: is it wired to the controller?"""
    c, d = controller(), docker()
    if d is None:
        return {"found": False}
    return {
        "found": True,
        "type": type(d).__name__,
        "shows_controller": getattr(d, "controller", None) is c,
        "status": d.status.toolTip(),
        "controller_status": c.status,
    }


# Krita's `createDocument`/`openDocument` wrappers own their document (libkis `Document(..., ownsDocument)`):
# when the Python object goes, the document is deleted, even under its open view. A scenario's `doc`
# going out of scope then tore a canvas down mid-run (Krita 6 crashed in ~KisDocument after the
# upscale scenario); every document lives as long as the session, as in a user's Krita.
DOCS = []


def keep(doc):
    DOCS.append(doc)
    return doc


def new_doc(name, size=SIZE):
    app = Krita.instance()
    doc = keep(app.createDocument(size, size, name, "RGBA", "U8", "", 72.0))
    doc.setBatchmode(True)
    app.activeWindow().addView(doc)
    layer = doc.createNode("drawing", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    # A diagonal gradient with a dark square: "drawn content" with known pixels.
    data = bytearray()
    for y in range(size):
        for x in range(size):
            dark = 40 <= x < 80 and 40 <= y < 80
            data += bytes((20, 20, 20, 255)) if dark else bytes((x * 2 % 256, y * 2 % 256, 128, 255))
    layer.setPixelData(qt().QByteArray(bytes(data)), 0, 0, size, size)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


# Krita 5.1 and 6.0 crash (segfault in KisNodeModel::processUpdateQueue) when a document is closed
# while its Layers docker still has a compressed update queued for one of its layers: a layer property
# change (lock, visibility, name…) queues one for up to a second. A person never closes a document that
# fast; the driver, standing in for one, lets that second pass before closing (see `quiet.py` for the
# scenario that closes at once on purpose, to show the plugin's results queue nothing).
SETTLE_S = 1.5


def settle(seconds=SETTLE_S):
    """Yield (let Krita's event loop run) for `seconds`."""
    end = time.time() + seconds
    while time.time() < end:
        yield


def close(doc):
    """Close like a person: after Krita's Layers docker has caught up."""
    yield from settle()
    doc.setModified(False)
    doc.close()


def select(doc, x, y, w, h):
    from krita import Selection

    sel = Selection()
    sel.select(x, y, w, h, 255)
    doc.setSelection(sel)


def layers(doc):
    out = []

    def walk(node, depth):
        for n in node.childNodes():
            if n.type() == "selectionmask":
                continue
            b = n.bounds()
            out.append({
                "name": n.name(), "type": n.type(), "depth": depth, "visible": n.visible(), "locked": n.locked(),
                "bounds": [b.x(), b.y(), b.width(), b.height()],
            })  # fmt: skip
            walk(n, depth + 1)

    walk(doc.rootNode(), 0)
    return out


def node(doc, name):
    return next((n for n in doc.rootNode().childNodes() if n.name() == name), None)


def pixels(doc, n):
    return bytes(n.pixelData(0, 0, doc.width(), doc.height()))


def trigger(action_id):
    act = Krita.instance().action(action_id)
    if act is None:
        raise RuntimeError(f"action {action_id} is not registered")
    act.trigger()


class Watch:
    """What the user saw while a job ran: every message, and whether the docker showed a step preview."""

    def __init__(self):
        self.messages = []
        self.preview_shown = 0

    def look(self):
        c, d = controller(), docker()
        if not self.messages or self.messages[-1] != c.message:
            self.messages.append(c.message)
        if d is not None and c.preview is not None:
            pix = d.review.preview.pixmap()
            if pix is not None and not pix.isNull() and pix.width() > 0:
                self.preview_shown += 1


def wait_idle(timeout=180, finished_before=None, watch=None):
    """Yield until the plugin has no job in flight (the runner calls us again every tick)."""
    c = controller()
    deadline = time.time() + timeout

    def busy():
        return c.pending or (finished_before is not None and len(c.finished) == finished_before)

    while busy() and time.time() < deadline:
        if watch is not None:
            watch.look()
        yield
    if watch is not None:
        watch.look()
    if c.pending:
        raise TimeoutError(f"jobs still pending after {timeout}s: {c.message}")


def run_action(res, action_id, doc, timeout=180):
    """Trigger a plugin action and wait for its job; record what the user saw and what came back."""
    c = controller()
    before, frames = len(c.finished), c.preview_frames
    watch = Watch()
    # Also look each time the controller has handled a batch of events (the docker refreshes then): a tick
    # of ours can fall after the step preview was already replaced by the result.
    c.listeners.append(watch.look)
    try:
        trigger(action_id)
        res["submitted"] = bool(c.pending)
        watch.look()
        yield from wait_idle(timeout, before if res["submitted"] else None, watch)
    finally:
        c.listeners.remove(watch.look)
    res["finished"] = c.finished[before:]
    res["messages"] = watch.messages
    res["preview_frames"] = c.preview_frames - frames
    res["preview_shown"] = watch.preview_shown
    res["welcome_jobs"] = (c.welcome or {}).get("jobs")
    res["preview_format"] = c.preview_format
    res["decodable_formats"] = list(c.client.preview_formats) if c.client else []
    doc.waitForDone()
    doc.refreshProjection()
    res["doc_size"] = [doc.width(), doc.height()]
    res["entries"] = entries(doc)
    res["layers"] = layers(doc)


def entries(doc):
    return [
        {"id": e.id, "kind": e.kind, "seed": e.seed, "index": e.index, "name": e.name, "applied": e.applied,
         "rect": [e.rect.x, e.rect.y, e.rect.w, e.rect.h], "canvas": list(e.canvas)}
        for e in controller().review.entries(doc)
    ]  # fmt: skip


def pick(entry_id):
    """Choose a history entry the way a user does: click its thumbnail in the docker's strip."""
    strip = docker().review.strip
    for i in range(strip.count()):
        item = strip.item(i)
        if item.data(qt().Qt.ItemDataRole.UserRole) == entry_id:
            strip.setCurrentItem(item)  # the same signal a click emits
            return
    raise AssertionError(f"{entry_id} is not in the docker's history strip")


def click(button):
    """A real button click through Qt (`click()` emits `clicked` exactly like the mouse)."""
    button.click()
    qt().QtWidgets.QApplication.processEvents()
