"""Test-driver extension for the `krita` host tests (never shipped).

Env: SDB_TEST_OUT = output dir (required; idle otherwise), SDB_TEST_SCENARIOS = comma list,
SDB_TEST_URL = server url. Scenarios run one after another in a single Krita session, driven
only through the plugin's actions (`Krita.instance().action("sdbridge_*").trigger()`) and its
documented settings keys. For each scenario the driver writes `<name>.json` (+ raw BGRA dumps of
new layers) to SDB_TEST_OUT; `done.json` at the end. Then it quits Krita.
"""

import json
import os
import time
import traceback

from krita import Extension, Krita, Selection
from PyQt5.QtCore import QByteArray, QTimer

OUT = os.environ.get("SDB_TEST_OUT")
SCENARIOS = [s for s in os.environ.get("SDB_TEST_SCENARIOS", "").split(",") if s]
URL = os.environ.get("SDB_TEST_URL", "")
T0 = time.time()
SIZE = 128  # small canvases keep CPU diffusion with the tiny model fast


def settings(**kw):
    app = Krita.instance()
    base = {
        "url": URL,
        "prompt": "a red fox",
        "negative": "",
        "seed": 42,
        "fixed_seed": "true",
        "steps": 2,
        "strength": 1.0,
        "width": 0,
        "height": 0,
        "batch": 1,
        "outpaint_side": "right",
        "outpaint_pixels": 64,
        "upscale_scale": 2.0,
        "upscale_strength": 0.3,
        "sampler": "Euler a",
    }
    base.update(kw)
    for k, v in base.items():
        app.writeSetting("sdbridge", k, str(v).lower() if isinstance(v, bool) else str(v))


def controller():
    import sdbridge  # the plugin package, importable by its pykrita name

    return sdbridge.CONTROLLER


def docker_state():
    """The sdbridge docker Krita made from the plugin's factory: is it wired to the controller?"""
    c = controller()
    found = [d for d in Krita.instance().dockers() if d.objectName() == "sdbridge_docker"]
    if not found:
        return {"found": False}
    d = found[0]
    return {
        "found": True,
        "type": type(d).__name__,
        "shows_controller": getattr(d, "controller", None) is c,
        "status": d.status.text() if hasattr(d, "status") else None,
        "controller_status": c.status,
    }


def new_doc(name):
    app = Krita.instance()
    doc = app.createDocument(SIZE, SIZE, name, "RGBA", "U8", "", 72.0)
    doc.setBatchmode(True)
    app.activeWindow().addView(doc)
    layer = doc.createNode("drawing", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    # A diagonal gradient with a dark square: "drawn content" with known pixels.
    data = bytearray()
    for y in range(SIZE):
        for x in range(SIZE):
            dark = 40 <= x < 80 and 40 <= y < 80
            data += bytes((20, 20, 20, 255)) if dark else bytes((x * 2 % 256, y * 2 % 256, 128, 255))
    layer.setPixelData(QByteArray(bytes(data)), 0, 0, SIZE, SIZE)
    doc.refreshProjection()
    doc.waitForDone()
    return doc


def layers(doc):
    out = []

    def walk(node, depth):
        for n in node.childNodes():
            if n.type() == "selectionmask":
                continue
            b = n.bounds()
            out.append(
                {
                    "name": n.name(),
                    "type": n.type(),
                    "depth": depth,
                    "visible": n.visible(),
                    "bounds": [b.x(), b.y(), b.width(), b.height()],
                }
            )
            walk(n, depth + 1)

    walk(doc.rootNode(), 0)
    return out


def find_new_layer(doc):
    for g in reversed([n for n in doc.rootNode().childNodes() if n.type() == "grouplayer"]):
        kids = [n for n in g.childNodes() if n.type() == "paintlayer"]
        if kids:
            return g, kids[0]
    return None, None


def dump(name, data):
    with open(os.path.join(OUT, name), "wb") as fh:
        fh.write(data)


def wait_idle(timeout=120, finished_before=None):
    """Yield until the plugin has no job in flight (the runner calls us again every tick)."""
    c = controller()
    deadline = time.time() + timeout
    while (
        c.pending or (finished_before is not None and len(c.finished) == finished_before)
    ) and time.time() < deadline:
        yield
    if c.pending:
        raise TimeoutError(f"jobs still pending after {timeout}s: {c.message}")


def trigger(action_id):
    act = Krita.instance().action(action_id)
    if act is None:
        raise RuntimeError(f"action {action_id} is not registered")
    act.trigger()


def run_action(res, action_id, doc, timeout=120):
    c = controller()
    before = len(c.finished)
    trigger(action_id)
    res["submitted"] = bool(c.pending)
    res["message_after_trigger"] = c.message
    yield from wait_idle(timeout, before if res["submitted"] else None)
    res["finished"] = c.finished[before:]
    res["message"] = c.message
    res["welcome_jobs"] = (c.welcome or {}).get("jobs")
    doc.waitForDone()
    doc.refreshProjection()
    res["doc_size"] = [doc.width(), doc.height()]
    res["layers"] = layers(doc)
    group, node = find_new_layer(doc)
    if node is not None:
        b = node.bounds()
        res["new_layer"] = {"name": node.name(), "group": group.name(), "bounds": [b.x(), b.y(), b.width(), b.height()]}
        # Full-canvas readback: layer pixels (BGRA) and the projection, for the pytest assertions.
        dump(res["scenario"] + ".layer.bgra", bytes(node.pixelData(0, 0, doc.width(), doc.height())))
    dump(res["scenario"] + ".projection.bgra", bytes(doc.pixelData(0, 0, doc.width(), doc.height())))


# --- scenarios (generators: `yield` = wait one tick) -----------------------------------------------


def sc_generate(res):
    settings()
    doc = new_doc("gen")
    dump("generate.before.bgra", bytes(doc.pixelData(0, 0, SIZE, SIZE)))
    yield from run_action(res, "sdbridge_generate", doc)
    # Undo must remove what the result added.
    n_before = len(layers(doc))
    trigger("edit_undo")
    doc.waitForDone()
    res["layers_after_undo"] = layers(doc)
    res["undo_removed"] = n_before - len(res["layers_after_undo"])
    yield


def sc_img2img(res):
    settings(strength=0.5, seed=7)
    doc = new_doc("img2img")
    yield from run_action(res, "sdbridge_generate", doc)


def sc_inpaint(res):
    settings(seed=5)
    doc = new_doc("inpaint")
    sel = Selection()
    sel.select(32, 32, 48, 48, 255)
    doc.setSelection(sel)
    res["selection"] = [32, 32, 48, 48]
    dump("inpaint.before.bgra", bytes(doc.pixelData(0, 0, SIZE, SIZE)))
    yield from run_action(res, "sdbridge_generate", doc)


def sc_outpaint(res):
    settings(outpaint_side="right", outpaint_pixels=64, seed=9)
    doc = new_doc("outpaint")
    yield from run_action(res, "sdbridge_outpaint", doc)


def sc_upscale(res):
    settings(upscale_scale=2.0, seed=11)
    doc = new_doc("upscale")
    yield from run_action(res, "sdbridge_upscale", doc, timeout=180)


def select_face_area(doc):
    # The drawn canvas has no real face, so mark one the way an artist would: a selection.
    sel = Selection()
    sel.select(24, 24, 64, 64, 255)
    doc.setSelection(sel)


def sc_face(res):
    settings(seed=13)
    doc = new_doc("face")
    select_face_area(doc)
    yield from run_action(res, "sdbridge_face", doc)


def sc_restore(res):
    settings()
    doc = new_doc("restore")
    select_face_area(doc)
    yield from run_action(res, "sdbridge_restore", doc, timeout=180)


def sc_cancel(res):
    # Many steps at a larger size: long enough to cancel mid-job.
    settings(steps=150, width=256, height=256, seed=3)
    doc = new_doc("cancel")
    c = controller()
    before = len(c.finished)
    n_layers = len(layers(doc))
    trigger("sdbridge_generate")
    res["submitted"] = bool(c.pending)
    deadline = time.time() + 60
    while time.time() < deadline and not (
        c.client and any(j.status == "started" and j.step > 0 for j in c.client.jobs())
    ):
        yield
    res["started_before_cancel"] = time.time() < deadline
    trigger("sdbridge_cancel")
    yield from wait_idle(60)
    res["finished"] = c.finished[before:]
    res["layers"] = layers(doc)
    res["layers_added"] = len(res["layers"]) - n_layers


def sc_persist(res):
    """Generation parameters survive save/reload (document annotation in the .kra)."""
    settings(seed=21)
    doc = new_doc("persist")
    yield from run_action(res, "sdbridge_generate", doc)
    path = os.path.join(OUT, "persist.kra")
    res["saved"] = bool(doc.saveAs(path))
    doc.setModified(False)
    doc.close()
    yield
    doc2 = Krita.instance().openDocument(path)
    doc2.setBatchmode(True)
    raw = bytes(doc2.annotation("sdbridge") or b"")
    res["annotation"] = json.loads(raw.decode()) if raw else None
    res["reloaded_layers"] = layers(doc2)
    doc2.close()


SCENARIO_FUNCS = {name[3:]: fn for name, fn in globals().items() if name.startswith("sc_")}


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.started = False
        self.gen = None
        self.timer = None

    def setup(self):
        if not OUT:
            return
        n = Krita.instance().notifier()
        n.setActive(True)
        n.windowCreated.connect(self.on_window)
        QTimer.singleShot(3000, self.on_window)

    def createActions(self, window):
        pass

    def on_window(self):
        if self.started or Krita.instance().activeWindow() is None:
            return
        self.started = True
        Krita.instance().setBatchmode(True)
        self.gen = self.run_all()
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(20)

    def tick(self):
        try:
            next(self.gen)
        except StopIteration:
            self.timer.stop()
            QTimer.singleShot(0, self.quit)

    def run_all(self):
        summary = {"t_window_s": round(time.time() - T0, 2), "scenarios": {}}
        c = controller()
        summary["deps_error"] = c.deps_error if c else "plugin not loaded"
        summary["actions"] = {
            a: Krita.instance().action(a) is not None
            for a in [
                "sdbridge_generate",
                "sdbridge_outpaint",
                "sdbridge_face",
                "sdbridge_restore",
                "sdbridge_upscale",
                "sdbridge_cancel",
            ]
        }
        for name in SCENARIOS:
            res = {"scenario": name, "ok": False}
            t = time.time()
            try:
                yield from SCENARIO_FUNCS[name](res)
                res["ok"] = True
            except Exception:
                res["error"] = traceback.format_exc()
            res["seconds"] = round(time.time() - t, 2)
            summary["scenarios"][name] = res["seconds"]
            with open(os.path.join(OUT, name + ".json"), "w") as fh:
                json.dump(res, fh, indent=1, default=str)
            for d in Krita.instance().documents():
                d.setModified(False)
                d.close()
            yield
        summary["docker"] = docker_state()
        summary["t_done_s"] = round(time.time() - T0, 2)
        with open(os.path.join(OUT, "done.json"), "w") as fh:
            json.dump(summary, fh, indent=1)

    def quit(self):
        app = Krita.instance()
        for d in app.documents():
            d.setModified(False)
            d.close()
        app.action("file_quit").trigger()


Krita.instance().addExtension(Driver(Krita.instance()))
