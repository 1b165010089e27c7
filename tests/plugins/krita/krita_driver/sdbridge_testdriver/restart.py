"""A result outlives Krita (plugins/krita/resume.py), over two Krita sessions on one profile: the first
sends a long job, saves the document and quits before the result; the second opens the document and the
result arrives in its history, fetched with the client id Krita kept in its settings."""

import json
import os
import time

from krita import Krita

from . import kit

KRA = "restart.kra"


def _kept():
    from sdbridge import resume

    return [r.job for r in resume.load()]


def sc_restart_submit(res):
    kit.settings(steps=150, width=256, height=256, seed=31)  # long enough to quit while it runs
    doc = kit.new_doc("restart")
    c = kit.controller()
    kit.trigger("sdbridge_generate")
    (job_id,) = list(c.pending)
    deadline = time.time() + 120
    while time.time() < deadline and c.client.job(job_id).status in ("pending", "sent"):
        yield  # until the server has the job (Krita quits right after)
    res["job"], res["status_at_quit"] = job_id, c.client.job(job_id).status
    res["saved"] = bool(doc.saveAs(os.path.join(kit.OUT, KRA)))
    # Closed at once (no layer of it changed, so nothing is queued in the Layers docker): a result that
    # comes before Krita quits finds its document closed and waits for it to be opened again.
    doc.setModified(False)
    doc.close()
    res["running_at_close"] = job_id in c.pending
    res["client_id"] = c.client.client_id
    res["setting_client_id"] = Krita.instance().readSetting("sdbridge", "client_id", "")
    res["kept"] = _kept()


def sc_restart_fetch(res):
    with open(os.path.join(kit.OUT, "restart_submit.json")) as fh:
        sent = json.load(fh)
    res["kept_at_start"] = _kept()
    if sent["job"] not in res["kept_at_start"]:
        return  # nothing to wait for: the test says why
    kit.settings()  # the server's address, as the user left it
    c = kit.controller()
    app = Krita.instance()
    doc = kit.keep(app.openDocument(os.path.join(kit.OUT, KRA)))
    doc.setBatchmode(True)
    app.activeWindow().addView(doc)  # a view of it: the plugin follows its jobs again
    deadline = time.time() + 300
    while time.time() < deadline and not any(f["job"] == sent["job"] for f in c.finished):
        yield
    res["finished"] = [f for f in c.finished if f["job"] == sent["job"]]
    res["client_id"] = c.client.client_id if c.client else None
    res["entries"] = kit.entries(doc)
    res["layers"] = kit.layers(doc)
    res["kept_after"] = _kept()
    res["message"] = c.message
    for _ in range(5):  # the docker redraws its history strip
        yield
    for name, widget in (("docker", kit.docker()), ("window", app.activeWindow().qwindow())):
        widget.grab().save(os.path.join(kit.OUT, f"{name}-after-restart.png"), "PNG")  # for people reviewing


SCENARIOS = {"restart_submit": sc_restart_submit, "restart_fetch": sc_restart_fetch}
