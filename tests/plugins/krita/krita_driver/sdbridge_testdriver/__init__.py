"""Test-driver extension for the `krita` host tests, Krita 5 and 6 alike (never shipped).

Env: SDB_TEST_OUT = output dir (required; idle otherwise), SDB_TEST_SCENARIOS = comma list,
SDB_TEST_URL = server url. Scenarios run one after another in a single Krita session, driven
through the plugin's actions, its documented settings keys and the docker's own widgets. For each
scenario the driver writes `<name>.json` (+ raw BGRA dumps) to SDB_TEST_OUT; `done.json` at the end,
then it quits Krita. Qt comes through the plugin's shim (PyQt5 on Krita 5, PyQt6 on Krita 6), and
uncaught exceptions are recorded instead of reaching Krita 6's modal exception dialog, which would
block the session until its timeout.
"""

import os
import sys
import time
import traceback

from krita import Extension, Krita

from . import kit

ERRORS = []


def _record_uncaught(exc_type, exc, tb):
    ERRORS.append("".join(traceback.format_exception(exc_type, exc, tb)))
    sys.__stderr__.write(ERRORS[-1])


if kit.OUT:
    sys.excepthook = _record_uncaught
    # A native crash (Krita's own or in a wrapper's destructor) leaves the Python stacks of every thread
    # here: the harness reports it with the crash.
    import faulthandler

    _FAULTS = open(os.path.join(kit.OUT, "faulthandler.log"), "w")  # noqa: SIM115 (open for the whole session)
    faulthandler.enable(_FAULTS, all_threads=True)


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.started = False
        self.gen = None
        self.timer = None

    def setup(self):
        if not kit.OUT:
            return
        n = Krita.instance().notifier()
        n.setActive(True)
        n.windowCreated.connect(self.on_window)
        kit.qt().QTimer.singleShot(3000, self.on_window)

    def createActions(self, window):
        pass

    def on_window(self):
        if self.started or Krita.instance().activeWindow() is None:
            return
        self.started = True
        Krita.instance().setBatchmode(True)
        self.gen = self.run_all()
        self.timer = kit.qt().QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(20)

    def tick(self):
        try:
            next(self.gen)
        except StopIteration:
            self.timer.stop()
            kit.qt().QTimer.singleShot(0, self.quit)
        except Exception:  # a driver bug: record it and still quit instead of hanging
            ERRORS.append(traceback.format_exc())
            self.timer.stop()
            self.write_done({"driver_crashed": True})
            kit.qt().QTimer.singleShot(0, self.quit)

    def run_all(self):
        from . import layout, live, quiet, region_list, regions, restart, scenarios

        funcs = {**scenarios.SCENARIOS, **layout.SCENARIOS, "regions": regions.sc_regions, **region_list.SCENARIOS}
        funcs |= live.SCENARIOS | quiet.SCENARIOS | restart.SCENARIOS
        summary = {"t_window_s": round(time.time() - kit.T0, 2), "scenarios": {}}
        summary.update(kit.plugin_summary())
        for name in kit.SCENARIOS:
            res = {"scenario": name, "ok": False}
            t = time.time()
            try:
                yield from funcs[name](res)
                res["ok"] = True
            except Exception:
                res["error"] = traceback.format_exc()
            res["seconds"] = round(time.time() - t, 2)
            res["uncaught"] = list(ERRORS)
            summary["scenarios"][name] = res["seconds"]
            kit.write_json(name + ".json", res)
            yield from kit.settle()  # see kit.SETTLE_S
            for d in Krita.instance().documents():
                d.setModified(False)
                d.close()
            yield
        summary["docker"] = kit.docker_state()
        self.write_done(summary)

    def write_done(self, summary):
        summary["uncaught"] = list(ERRORS)
        summary["t_done_s"] = round(time.time() - kit.T0, 2)
        kit.write_json("done.json", summary)

    def quit(self):
        app = Krita.instance()
        for d in app.documents():
            d.setModified(False)
            d.close()
        app.action("file_quit").trigger()


if os.environ.get("SDB_TEST_OUT"):
    Krita.instance().addExtension(Driver(Krita.instance()))
