"""Job scenarios (generators: `yield` = wait one tick). Each fills `res` for its pytest assertions."""

import json
import os
import time

from krita import Krita

from . import kit
from .kit import SIZE


def preview_layer(doc):
    import sdbridge.document as document

    n = kit.node(doc, document.PREVIEW_NAME)
    if n is None:
        return None
    b = n.bounds()
    top = [c for c in doc.rootNode().childNodes() if c.type() != "selectionmask"][-1]
    return {"locked": n.locked(), "visible": n.visible(), "bounds": [b.x(), b.y(), b.width(), b.height()],
            "on_top": top.name() == n.name()}  # fmt: skip


def apply(res, doc, entry_id, to_selection=False, undo=True):
    """Pick the entry in the docker's strip, click Apply (or Apply to selection); then undo once."""
    d = kit.docker()
    kit.pick(entry_id)
    res["preview_after_pick"] = preview_layer(doc)
    before = kit.layers(doc)
    kit.click(d.review.apply_sel if to_selection else d.review.apply)
    deadline = time.time() + 30
    while kit.controller().applying and time.time() < deadline:  # a resize waits for the canvas
        yield
    doc.waitForDone()
    yield
    after = kit.layers(doc)
    res["apply_message"] = kit.controller().message
    res["after_apply"] = after
    res["preview_after_apply"] = preview_layer(doc)
    names = {x["name"] for x in before}
    new = [x for x in after if x["name"] not in names and x["depth"] == 0]
    res["applied"] = new
    top = [n for n in doc.rootNode().childNodes() if n.type() != "selectionmask"][-1]
    res["applied_node"] = top.name()
    kit.dump(res["scenario"] + ".applied.bgra", kit.pixels(doc, top))
    kit.dump(res["scenario"] + ".projection.bgra", bytes(doc.pixelData(0, 0, doc.width(), doc.height())))
    res["doc_size_after_apply"] = [doc.width(), doc.height()]
    if undo:
        kit.trigger("edit_undo")
        doc.waitForDone()
        yield
        res["after_undo"] = kit.layers(doc)


def sc_generate(res):
    """txt2img: the result lands on the locked preview layer and in the history; Apply adds the layer."""
    # A job of seconds (150 tiny steps, ~1.7 s on an idle 2-core machine), so the plug-in handles a step preview
    # in an event batch (50 ms) before the one with the result. A 2-step job sent both in one batch; so did a
    # 60-step one (~0.7 s) once, with Krita's UI thread held up for its whole length.
    kit.settings(steps=150)
    doc = kit.new_doc("gen")
    kit.dump("generate.before.bgra", bytes(doc.pixelData(0, 0, SIZE, SIZE)))
    yield from kit.run_action(res, "sdbridge_generate", doc)
    res["preview_layer"] = preview_layer(doc)
    import sdbridge.document as document

    n = kit.node(doc, document.PREVIEW_NAME)
    if n is not None:
        kit.dump("generate.preview.bgra", kit.pixels(doc, n))
    res["strip"] = kit.docker().review.strip.count()
    res["docker_preview_has_pixmap"] = not kit.docker().review.preview.pixmap().isNull()
    yield from apply(res, doc, res["entries"][0]["id"])


def sc_img2img(res):
    kit.settings(strength=0.5, seed=7)
    doc = kit.new_doc("img2img")
    res["strength_label"] = kit.docker().strength_text.text()
    yield from kit.run_action(res, "sdbridge_generate", doc)
    yield from apply(res, doc, res["entries"][0]["id"], undo=False)


def sc_inpaint_batch(res):
    """Generate with a selection inpaints; batch 2 gives two history entries; every status says inpaint."""
    kit.settings(seed=5, batch=2)
    doc = kit.new_doc("inpaint")
    kit.select(doc, 32, 32, 48, 48)
    res["selection"] = [32, 32, 48, 48]
    kit.dump("inpaint_batch.before.bgra", bytes(doc.pixelData(0, 0, SIZE, SIZE)))
    yield from kit.run_action(res, "sdbridge_generate", doc)
    kit.trigger("deselect")
    yield from apply(res, doc, res["entries"][-1]["id"], undo=False)


def sc_apply_selection(res):
    """Apply to selection: the layer is the result cut to the selection."""
    kit.settings(seed=17)
    doc = kit.new_doc("applysel")
    yield from kit.run_action(res, "sdbridge_generate", doc)
    import sdbridge.document as document

    kit.dump("apply_selection.preview.bgra", kit.pixels(doc, kit.node(doc, document.PREVIEW_NAME)))
    kit.select(doc, 10, 20, 50, 30)
    res["selection"] = [10, 20, 50, 30]
    yield from apply(res, doc, res["entries"][0]["id"], to_selection=True)


def sc_discard_reuse(res):
    """Batch 2: discard one entry; reuse the other's prompt and seed in the docker."""
    kit.settings(seed=30, batch=2, prompt="a blue bird")
    doc = kit.new_doc("discard")
    yield from kit.run_action(res, "sdbridge_generate", doc)
    d, c = kit.docker(), kit.controller()
    first, second = res["entries"][0]["id"], res["entries"][1]["id"]
    kit.pick(second)
    d.grab().save(os.path.join(kit.OUT, "docker-with-results.png"), "PNG")  # for people reviewing the docker
    res["shown_before_discard"] = c.shown_entry()
    kit.click(d.review.discard)
    yield
    res["after_discard"] = kit.entries(doc)
    res["preview_after_discard"] = preview_layer(doc)
    res["strip_after_discard"] = d.review.strip.count()
    kit.settings(prompt="something else", seed=-1, fixed_seed=False, batch=1)
    kit.pick(first)
    kit.click(d.review.reuse)
    yield
    app = Krita.instance()
    res["reused"] = {k: app.readSetting("sdbridge", k, "") for k in ("prompt", "seed", "fixed_seed")}
    res["docker_fields"] = {"prompt": d.prompt.toPlainText(), "seed": d.seed.value(), "fixed": d.fixed.isChecked()}


def sc_outpaint(res):
    kit.settings(outpaint_side="right", outpaint_pixels=64, seed=9)
    doc = kit.new_doc("outpaint")
    yield from kit.run_action(res, "sdbridge_outpaint", doc)
    res["doc_size_before_apply"] = [doc.width(), doc.height()]
    yield from apply(res, doc, res["entries"][0]["id"], undo=False)


def sc_upscale(res):
    kit.settings(upscale_scale=2.0, seed=11)
    doc = kit.new_doc("upscale")
    yield from kit.run_action(res, "sdbridge_upscale", doc)
    res["preview_layer"] = preview_layer(doc)
    res["doc_size_before_apply"] = [doc.width(), doc.height()]
    yield from apply(res, doc, res["entries"][0]["id"], undo=False)


def _face_area(doc):
    # The drawn canvas has no real face, so mark one the way an artist would: a selection.
    kit.select(doc, 24, 24, 64, 64)


def sc_face(res):
    kit.settings(seed=13)
    doc = kit.new_doc("face")
    _face_area(doc)
    yield from kit.run_action(res, "sdbridge_face", doc)
    yield from apply(res, doc, res["entries"][0]["id"], undo=False)


def sc_restore(res):
    kit.settings()
    doc = kit.new_doc("restore")
    _face_area(doc)
    yield from kit.run_action(res, "sdbridge_restore", doc)
    yield from apply(res, doc, res["entries"][0]["id"], undo=False)


def sc_noface(res):
    """Face re-render on a picture without faces: a human message, no entry."""
    kit.settings(seed=14)
    doc = kit.new_doc("noface")
    yield from kit.run_action(res, "sdbridge_face", doc)


def sc_offline(res):
    """A dead address: a human status, the job waits as 'offline'; fixing the address sends it."""
    kit.settings(url="ws://127.0.0.1:9/", seed=19)
    doc = kit.new_doc("offline")
    c = kit.controller()
    c.connect()
    deadline = time.time() + 30
    while "not reachable" not in c.status and time.time() < deadline:
        yield
    res["status_offline"] = c.status
    before = len(c.finished)
    kit.trigger("sdbridge_generate")
    res["message_offline"] = c.message
    res["pending_offline"] = len(c.pending)
    kit.settings()  # the right address again, then Connect (the Settings tab's button)
    kit.click(kit.docker().findChild(kit.qt().QtWidgets.QPushButton, "sdbridge_connect"))
    yield from kit.wait_idle(180, before)
    res["finished"] = c.finished[before:]
    res["entries"] = kit.entries(doc)
    res["status_online"] = c.status


def sc_cancel(res):
    # Many steps at a larger size: long enough to cancel mid-job.
    kit.settings(steps=150, width=256, height=256, seed=3)
    doc = kit.new_doc("cancel")
    c = kit.controller()
    before = len(c.finished)
    n_layers = len(kit.layers(doc))
    kit.trigger("sdbridge_generate")
    res["submitted"] = bool(c.pending)
    deadline = time.time() + 90

    def running():
        return c.client and any(j.status == "started" and j.step > 0 for j in c.client.jobs())

    while time.time() < deadline and not running():
        yield
    res["started_before_cancel"] = time.time() < deadline
    kit.click(kit.docker().cancel)
    yield from kit.wait_idle(90)
    res["finished"] = c.finished[before:]
    res["entries"] = kit.entries(doc)
    res["layers_added"] = len(kit.layers(doc)) - n_layers


def sc_persist(res):
    """The history (with its images) and the parameters log survive save and reload of the .kra."""
    kit.settings(seed=21, batch=2)
    doc = kit.new_doc("persist")
    yield from kit.run_action(res, "sdbridge_generate", doc)
    path = os.path.join(kit.OUT, "persist.kra")
    res["saved"] = bool(doc.saveAs(path))
    import sdbridge.document as document

    key = document.doc_key(doc)
    yield from kit.close(doc)
    for _ in range(5):
        yield
    # Closed: the plugin forgot its in-memory copy, so what comes back below is read from the file.
    res["cache_dropped"] = key not in kit.controller().review._histories
    app = Krita.instance()
    doc2 = kit.keep(app.openDocument(path))
    doc2.setBatchmode(True)
    app.activeWindow().addView(doc2)
    for _ in range(10):  # the docker follows the active view (canvasChanged)
        yield
    raw = bytes(doc2.annotation("sdbridge") or b"")
    res["annotation"] = json.loads(raw.decode()) if raw else None
    res["reloaded_layers"] = kit.layers(doc2)
    res["reloaded_entries"] = kit.entries(doc2)
    res["reloaded_strip"] = kit.docker().review.strip.count()
    if res["reloaded_entries"]:
        yield from apply(res, doc2, res["reloaded_entries"][1]["id"], undo=False)


def sc_preview_error(res):
    """A step preview this Krita cannot decode: logged every time, said to the user once."""
    from sdbridge.controller import messages

    c = kit.controller()
    c.message = ""
    c._step_preview({"format": "webp", "data": b"not an image"})
    res["first"] = c.message
    c.message = ""
    c._step_preview({"format": "webp", "data": b"still not an image"})
    res["second"] = c.message
    res["expected"] = messages.preview_undecodable("webp")
    yield


def sc_control(res):
    """A hidden paint layer (a white cross on transparency) as the scribble ControlNet's control, added
    through the docker's Control tab: the same generate (same seed) gives other pixels with it, and the
    very same pixels again once the control is switched off."""
    kit.settings(seed=11)
    doc = kit.new_doc("control")
    import sdbridge.document as document

    def generate(tag):
        yield from kit.run_action(res, "sdbridge_generate", doc)
        res[tag] = [f["status"] for f in res["finished"]]
        kit.dump(f"control.{tag}.bgra", kit.pixels(doc, kit.node(doc, document.PREVIEW_NAME)))

    yield from generate("without")
    sketch = doc.createNode("sketch", "paintlayer")
    data = bytearray(SIZE * SIZE * 4)
    for y in range(SIZE):
        for x in range(SIZE):
            if abs(x - y) < 6 or abs(x + y - SIZE) < 6:
                data[(y * SIZE + x) * 4 : (y * SIZE + x + 1) * 4] = b"\xff\xff\xff\xff"
    sketch.setPixelData(kit.qt().QByteArray(bytes(data)), 0, 0, SIZE, SIZE)
    doc.rootNode().addChildNode(sketch, None)
    doc.waitForDone()
    yield
    doc.setActiveNode(sketch)  # what a click on the layer in the Layers docker does
    for _ in range(3):
        yield
    sketch.setVisible(False)  # as users keep control layers: it guides the job, it is not in the picture
    doc.refreshProjection()
    doc.waitForDone()
    yield
    panel = kit.docker().controls
    kit.click(panel.add)
    yield
    pre = panel.preprocess
    pre.setCurrentIndex(pre.findData("scribble"))
    res["list"] = [panel.list.item(i).text() for i in range(panel.list.count())]
    res["annotation"] = json.loads(bytes(doc.annotation("sdbridge-controls") or b"{}").decode())
    yield from generate("with")
    panel.enabled.setChecked(False)
    yield
    res["annotation_off"] = json.loads(bytes(doc.annotation("sdbridge-controls") or b"{}").decode())
    yield from generate("off")


SCENARIOS = {name[3:]: fn for name, fn in globals().items() if name.startswith("sc_")}
