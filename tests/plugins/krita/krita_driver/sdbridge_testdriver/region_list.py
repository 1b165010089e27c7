"""The `region_list` scenario: regions made and edited through the docker's Regions tab as a user does
(buttons clicked, prompts typed into the list's fields), on the photo of the `regions` scenario.

One region from a soft selection over the left quarter, one from a layer group over the right quarter;
a region added by renaming a layer by hand and removed by deleting it; Show masks on for one job; the
document saved as .kra and opened again. Results are dumped as `region_list.<tag>.bgra`."""

import importlib
import json
import os
import time

from krita import Krita, Selection

from . import kit, layout
from .kit import SIZE
from .regions import BLUE, RED, RIGHT, SETTINGS, generate, paint, photo_doc

QUARTER = SIZE // 4
FEATHER = 4


def _qtest():
    return importlib.import_module(("PyQt6" if kit.qt().QT6 else "PyQt5") + ".QtTest").QTest


def typed(widget, text):
    """Type into a field as a user does: everything in it selected, the keys, then Return."""
    qt = kit.qt()
    widget.setFocus()
    widget.selectAll()
    _qtest().keyClicks(widget, text)
    _qtest().keyClick(widget, qt.Qt.Key.Key_Return)
    qt.QtWidgets.QApplication.processEvents()


def rows(panel):
    return [
        {"layer": r.layer, "on": r.on.isChecked(), "prompt": r.prompt.text(), "negative": r.negative.text(),
         "strength": r.strength.value()}
        for r in panel.rows
    ]  # fmt: skip


def row_of(panel, node):
    import sdbridge.controls as controls

    ident = controls.layer_id(node)
    return next(r for r in panel.rows if r.layer == ident)


def until(test, timeout=15):
    """Yield until `test()` holds (the tab looks at the layers every few hundred ms); its last value."""
    deadline = time.time() + timeout
    while not test() and time.time() < deadline:
        yield
    return test()


def region_layers(doc):
    import sdbridge.regions as regions

    return [{"name": n.name(), "type": n.type(), "opacity": n.opacity(), "visible": n.visible(), "blend":
             n.blendingMode()} for n in regions.region_nodes(doc)]  # fmt: skip


def annotation(doc):
    return json.loads(bytes(doc.annotation("sdbridge-regions") or b"{}").decode())


def shot(d, name):
    path = os.path.join(kit.OUT, name)
    d.grab().save(path, "PNG")
    return path


def sc_region_list(res):
    import sdbridge.regions as regions

    kit.settings(**SETTINGS)
    doc = photo_doc("region-list")
    d = kit.docker()
    win, _hidden = layout.docker_column(d)
    win.resize(*layout.SHOT)
    panel = d.regions
    d.tabs.setCurrentIndex(next(i for i in range(d.tabs.count()) if d.tabs.widget(i).isAncestorOf(panel)))
    yield from layout._settle(10)
    res["plain"] = yield from generate(doc, "region_list.plain")

    # 1. a soft selection over the left quarter -> New region from selection, its prompt typed in its row
    sel = Selection()
    sel.select(0, 0, QUARTER, SIZE, 255)
    sel.feather(FEATHER)
    doc.setSelection(sel)
    kit.dump("region_list.selection.gray", bytes(doc.selection().pixelData(0, 0, SIZE, SIZE)))
    kit.click(panel.from_selection)
    yield
    res["selection_after"] = doc.selection() is not None and doc.selection().width() > 0
    left = doc.activeNode()
    res["new_layer"] = {"name": left.name(), "rows": len(panel.rows), "focus": row_of(panel, left).prompt.hasFocus()}
    kit.dump("region_list.left.bgra", kit.pixels(doc, left))
    typed(row_of(panel, left).prompt, "a red barn in snow")
    typed(row_of(panel, left).negative, "blurry")

    # 2. a group over the right quarter -> New region from layer group, prompt and strength typed
    group = doc.createNode("right side", "grouplayer")
    doc.rootNode().addChildNode(group, None)
    paint(doc, group, "sky pixels", RIGHT, BLUE)
    doc.refreshProjection()
    doc.waitForDone()
    yield from layout._settle(3)  # Krita's view makes its layer shapes later: only then can a layer be picked
    doc.setActiveNode(group)  # what a click on the group in the Layers docker does
    yield from layout._settle(3)
    kit.click(panel.from_group)
    yield
    typed(row_of(panel, group).prompt, "a stormy night sky")
    typed(row_of(panel, group).strength, "80")
    yield from layout._settle(3)
    # refused, in words: a layer of a region group (its pixels), and no selection
    doc.setActiveNode(next(n for n in group.childNodes() if n.name() == "sky pixels"))
    yield from layout._settle(3)
    kit.click(panel.from_group)
    res["refused_member"] = kit.controller().message
    kit.click(panel.from_selection)
    res["refused_no_selection"] = kit.controller().message
    res["rows"] = rows(panel)
    res["layers"] = region_layers(doc)
    res["annotation"] = annotation(doc)
    res["two"] = yield from generate(doc, "region_list.two")

    # 3. the list follows the Layers docker: a layer renamed by hand, then deleted
    moon = paint(doc, doc.rootNode(), "moon", (0, 0, SIZE, 16), RED)
    yield
    moon.setName("region: a full moon")
    res["renamed_seen"] = yield from until(lambda: len(panel.rows) == 3)
    res["rows_renamed"] = rows(panel)
    moon.remove()
    res["deleted_seen"] = yield from until(lambda: len(panel.rows) == 2)
    res["rows_deleted"] = rows(panel)

    # 4. an ordinary layer -> New region from layer group wraps it in a group; the row's remove button
    # gives the group its name back and keeps the layer
    lone = paint(doc, doc.rootNode(), "lone layer", (0, SIZE - 16, SIZE, 16), RED)
    yield from layout._settle(3)
    doc.setActiveNode(lone)
    yield from layout._settle(3)
    kit.click(panel.from_group)
    yield
    wrap = lone.parentNode()
    res["wrapped"] = {"name": wrap.name(), "type": wrap.type(), "rows": len(panel.rows),
                      "annotation": annotation(doc)}  # fmt: skip
    kit.click(row_of(panel, wrap).remove)
    yield
    res["unwrapped"] = {"name": wrap.name(), "child": [n.name() for n in wrap.childNodes()], "rows": rows(panel),
                        "message": kit.controller().message}  # fmt: skip
    wrap.remove()  # out of the way of the pictures below
    doc.refreshProjection()
    doc.waitForDone()

    # 5. Show masks: a locked overlay; the next job (same seed) is the job without it
    kit.click(panel.masks)
    yield from layout._settle(3)
    overlay = regions.overlay(doc)
    res["overlay"] = None if overlay is None else {"locked": overlay.locked(), "visible": overlay.visible()}
    if overlay is not None:
        kit.dump("region_list.overlay.bgra", kit.pixels(doc, overlay))
    res["masks_checked"] = (panel.masks.isChecked(), panel.masks.text())
    res["shot"] = shot(d, "docker-regions-1280x800.png")
    win.grab().save(os.path.join(kit.OUT, "window-regions-1280x800.png"), "PNG")
    res["masked"] = yield from generate(doc, "region_list.masked")
    res["overlay_after_job"] = regions.overlay(doc) is not None
    kit.click(panel.masks)
    yield
    res["overlay_off"] = regions.overlay(doc) is None and not panel.masks.isChecked()
    res["masks_text_off"] = panel.masks.text()
    res["layers_off"] = [x["name"] for x in kit.layers(doc)]

    # 6. saved as .kra and opened again: the rows come back from the layers and the annotation
    path = os.path.join(kit.OUT, "region_list.kra")
    res["saved"] = bool(doc.saveAs(path))
    yield from kit.settle()
    doc.setModified(False)
    doc.close()
    yield from layout._settle(5)
    app = Krita.instance()
    doc2 = kit.keep(app.openDocument(path))
    doc2.setBatchmode(True)
    app.activeWindow().addView(doc2)
    res["reloaded_seen"] = yield from until(lambda: len(panel.rows) == 2)
    res["rows_reloaded"] = rows(panel)
    res["layers_reloaded"] = region_layers(doc2)
    res["annotation_reloaded"] = annotation(doc2)
    yield from kit.settle()


SCENARIOS = {"region_list": sc_region_list}
