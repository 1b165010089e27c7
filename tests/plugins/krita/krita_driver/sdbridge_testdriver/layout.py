"""The docker as a user sees it: screenshots at 1280×800, and every control checked to lie inside
its visible viewport (after scrolling its own tab, where a tab scrolls) at a small window size."""

import os
import time

from krita import Krita

from . import kit

SMALL = (1024, 600)
SHOT = (1280, 800)


def _settle(n=6):
    for _ in range(n):
        kit.qt().QtWidgets.QApplication.processEvents()
        yield


def _controls():
    w = kit.qt().QtWidgets
    return (w.QAbstractButton, w.QComboBox, w.QAbstractSpinBox, w.QLineEdit, w.QPlainTextEdit, w.QSlider,
            w.QListWidget, w.QProgressBar)  # fmt: skip


def _inside(widget, viewport):
    """`widget`'s whole rect inside `viewport`'s (both visible on screen)."""
    p = widget.mapTo(viewport, kit.qt().QtCore.QPoint(0, 0))
    vw, vh = viewport.width(), viewport.height()
    return p.x() >= 0 and p.y() >= 0 and p.x() + widget.width() <= vw and p.y() + widget.height() <= vh


def _label(widget):
    text = widget.text() if hasattr(widget, "text") and callable(widget.text) else ""
    return f"{type(widget).__name__}:{widget.objectName() or text or '?'}"


def geometry(d):
    """Every visible control, tab by tab: inside its scroll area's viewport once scrolled to, or
    (outside the tabs) inside the docker's viewport without scrolling; none squeezed narrower than
    its minimum size hint."""
    qw = kit.qt().QtWidgets
    outer = d.widget()
    report = {"docker": [d.width(), d.height()], "outer_scroll_max": outer.verticalScrollBar().maximum(),
              "outer_hscroll_max": outer.horizontalScrollBar().maximum(), "checked": [], "problems": []}  # fmt: skip
    tabs = d.tabs
    for i in range(tabs.count()):
        tabs.setCurrentIndex(i)
        yield from _settle(3)
        page = tabs.widget(i)
        area = page.findChild(qw.QScrollArea)
        for w in page.findChildren(_controls()):
            if not w.isVisibleTo(d) or isinstance(w.parent(), (qw.QAbstractSpinBox, qw.QComboBox)):
                continue  # a spin box's / combo's own line edit is checked as its parent
            if area is not None and area.widget().isAncestorOf(w):
                area.ensureWidgetVisible(w, 0, 0)
                qw.QApplication.processEvents()
                ok = _inside(w, area.viewport()) and _inside(area.viewport(), outer.viewport())
            else:
                ok = _inside(w, outer.viewport())
            _record(report, f"{tabs.tabText(i)}/{_label(w)}", w, ok)
    tabs.setCurrentIndex(0)
    yield from _settle(3)
    fixed = [d.cancel, d.bar, d.message, d.status, d.review.strip, d.review.preview, d.review.apply,
             d.review.apply_sel, d.review.discard, d.review.reuse, tabs.tabBar()]  # fmt: skip
    for w in fixed:
        _record(report, f"fixed/{_label(w)}", w, w.isVisibleTo(d) and _inside(w, outer.viewport()))
    report["tab_buttons"] = {k: b.isVisibleTo(d) for k, b in d.buttons.items()}
    return report


def _record(report, name, w, ok):
    hint = w.minimumSizeHint()
    squeezed = w.width() < hint.width() - 1 or w.height() < hint.height() - 1
    report["checked"].append(name)
    if not ok or squeezed:
        p = w.mapTo(w.window(), kit.qt().QtCore.QPoint(0, 0))
        report["problems"].append({"widget": name, "inside": ok, "squeezed": squeezed,
                                   "rect": [p.x(), p.y(), w.width(), w.height()],
                                   "min_hint": [hint.width(), hint.height()]})  # fmt: skip


def _shot(widget, name):
    path = os.path.join(kit.OUT, name)
    widget.grab().save(path, "PNG")
    return path


def sc_layout(res):
    app = Krita.instance()
    kit.settings()
    kit.new_doc("layout")
    c, d = kit.controller(), kit.docker()
    c.connect()  # the pickers fill from the server's welcome
    deadline = time.time() + 60
    while not c.status.startswith("Connected") and time.time() < deadline:
        yield
    res["status"] = c.status
    win = app.activeWindow().qwindow()
    area = win.dockWidgetArea(d)
    hidden = []
    for other in win.findChildren(kit.qt().QtWidgets.QDockWidget):
        if other is not d and other.isVisible() and win.dockWidgetArea(other) == area:
            other.hide()  # the sdbridge docker gets the column, as a user arranging a workspace would
            hidden.append(other.objectName())
    res["hidden_dockers"] = hidden
    d.show()
    d.raise_()
    win.showNormal()
    for size, tag in ((SHOT, "1280x800"), (SMALL, "small")):
        win.resize(*size)
        yield from _settle(10)
        res[f"window_{tag}"] = [win.width(), win.height()]
        res[f"shot_{tag}"] = _shot(d, f"docker-{tag}.png")
        _shot(win, f"window-{tag}.png")
        report = yield from geometry(d)
        res[f"geometry_{tag}"] = report
    res["pickers"] = {
        name: [getattr(d, name).itemText(i) for i in range(getattr(d, name).count())]
        for name in ("model", "lora", "vae", "upscaler", "restorer", "sampler")
    }
    res["strength_label"] = d.strength_text.text()


SCENARIOS = {"layout": sc_layout}
