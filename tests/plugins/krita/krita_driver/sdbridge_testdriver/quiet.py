"""A result landing on the preview layer changes no layer property (lock, visibility): each such change
queues a Layers-docker update, and Krita 5.1/6.0 crash when a document is closed before that update ran
(kit.SETTLE_S). The job is submitted while the server is unreachable, so the canvas is read (which hides
the preview layer for a moment) long before the result arrives; the document is closed the moment the
result is on it, and Krita must live on with no document open."""

import time

from krita import Krita

from . import kit


def _layers_docker_changes():
    """Timestamps of every `dataChanged` of the Layers docker's model(s), from now on."""
    box = next(d for d in Krita.instance().dockers() if d.objectName() == "KisLayerBox")
    seen = []
    for view in box.findChildren(kit.qt().QtWidgets.QTreeView):
        if view.model() is not None:
            view.model().dataChanged.connect(lambda *_a: seen.append(time.time()))
    return seen


def sc_quiet_result(res):
    kit.settings(seed=23)
    doc = kit.new_doc("quiet")
    c = kit.controller()
    yield from kit.run_action(res, "sdbridge_generate", doc)  # the preview layer exists from here on
    res["first"] = [f["status"] for f in res["finished"]]
    kit.settings(url="ws://127.0.0.1:9/", seed=24)
    c.connect()
    before = len(c.finished)
    kit.trigger("sdbridge_generate")  # reads the canvas now; the job waits for the server
    res["waiting"] = len(c.pending)
    yield from kit.settle()  # whatever reading the canvas queued in the Layers docker has run
    changes = _layers_docker_changes()
    kit.settings()
    c.connect()
    deadline = time.time() + 180
    while len(c.finished) == before and time.time() < deadline:
        yield
    t_result = time.time()
    res["second"] = [f["status"] for f in c.finished[before:]]
    res["docker_changes_after_result"] = [round(t - t_result, 3) for t in changes]
    res["preview_shown"] = c.shown_entry() is not None
    doc.setModified(False)
    doc.close()  # at once: nothing of the result may still be queued for the closed document's layers
    yield from kit.settle()
    res["krita_alive"] = True


SCENARIOS = {"quiet_result": sc_quiet_result}
