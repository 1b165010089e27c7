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
                # The whole widget (ensureWidgetVisible only brings an input's cursor into view).
                c = w.mapTo(area.widget(), kit.qt().QtCore.QPoint(w.width() // 2, w.height() // 2))
                area.ensureVisible(c.x(), c.y(), w.width() // 2 + 1, w.height() // 2 + 1)
                qw.QApplication.processEvents()
                ok = _inside(w, area.viewport()) and _inside(area.viewport(), outer.viewport())
                where = {"scroll": area.verticalScrollBar().value(), "viewport": [area.viewport().width(),
                         area.viewport().height()], "at": _at(w, area.viewport())}  # fmt: skip
            else:
                ok, where = _inside(w, outer.viewport()), {"at": _at(w, outer.viewport())}
            _record(report, f"{tabs.tabText(i) or tabs.tabToolTip(i).split(':')[0]}/{_label(w)}", w, ok, where)
    tabs.setCurrentIndex(0)
    yield from _settle(3)
    fixed = [d.cancel, d.bar, d.message, d.status, d.review.strip, d.review.preview, d.review.apply,
             d.review.apply_sel, d.review.discard, d.review.reuse, tabs.tabBar()]  # fmt: skip
    bar = tabs.tabBar()
    report["tabs_fit"] = all(bar.tabRect(i).right() <= bar.width() for i in range(bar.count()))
    root = outer.widget()
    report["min_size"] = [root.minimumSizeHint().width(), root.minimumSizeHint().height()]
    lay = root.layout()
    report["debug"] = {"root": [root.width(), root.height()], "hfw": lay.hasHeightForWidth(),
                       "items": [[type(lay.itemAt(i).widget()).__name__, lay.itemAt(i).minimumSize().height(),
                                  lay.itemAt(i).geometry().height()] for i in range(lay.count())],
                       "pages": [[tabs.widget(i).minimumSizeHint().height(), tabs.widget(i).height()]
                                 for i in range(tabs.count())]}  # fmt: skip
    for w in fixed:
        ok = w.isVisibleTo(d) and _inside(w, outer.viewport())
        _record(report, f"fixed/{_label(w)}", w, ok, {"at": _at(w, outer.viewport())})
    return report


def _at(w, viewport):
    p = w.mapTo(viewport, kit.qt().QtCore.QPoint(0, 0))
    return [p.x(), p.y(), w.width(), w.height()]


def _record(report, name, w, ok, where=None):
    # A size set on the widget itself wins over its hint in Qt's layouts (e.g. a 2-line text box).
    hint = w.minimumSizeHint()
    need_w, need_h = w.minimumWidth() or hint.width(), w.minimumHeight() or hint.height()
    squeezed = w.width() < need_w - 1 or w.height() < need_h - 1
    report["checked"].append(name)
    if not ok or squeezed:
        report["problems"].append({"widget": name, "inside": ok, "squeezed": squeezed, "where": where,
                                   "size": [w.width(), w.height()], "needs": [need_w, need_h]})  # fmt: skip


def _shot(widget, name):
    path = os.path.join(kit.OUT, name)
    widget.grab().save(path, "PNG")
    return path


def docker_column(d):
    """The sdbridge docker shown with its column to itself, as a user arranging a workspace would:
    returns Krita's main window and the names of the dockers hidden."""
    win = Krita.instance().activeWindow().qwindow()
    area = win.dockWidgetArea(d)
    hidden = []
    for other in win.findChildren(kit.qt().QtWidgets.QDockWidget):
        if other is not d and other.isVisible() and win.dockWidgetArea(other) == area:
            other.hide()
            hidden.append(other.objectName())
    d.show()
    d.raise_()
    win.showNormal()
    return win, hidden


def sc_layout(res):
    kit.settings()
    kit.new_doc("layout")
    c, d = kit.controller(), kit.docker()
    c.connect()  # the pickers fill from the server's welcome
    deadline = time.time() + 60
    while not c.status.startswith("Connected") and time.time() < deadline:
        yield
    res["status"] = c.status
    win, res["hidden_dockers"] = docker_column(d)
    for size, tag in ((SHOT, "1280x800"), (SMALL, "small")):
        win.resize(*size)
        yield from _settle(10)
        res[f"window_{tag}"] = [win.width(), win.height()]
        res[f"shot_{tag}"] = _shot(d, f"docker-{tag}.png")
        _shot(win, f"window-{tag}.png")
        if tag == "1280x800":  # every tab, for people reviewing the docker
            for i in range(1, d.tabs.count()):
                d.tabs.setCurrentIndex(i)
                yield from _settle(3)
                _shot(d, f"docker-{tag}-tab{i}.png")
            d.tabs.setCurrentIndex(0)
            yield from _settle(3)
        report = yield from geometry(d)
        res[f"geometry_{tag}"] = report
    res["pickers"] = {
        name: [getattr(d, name).itemText(i) for i in range(getattr(d, name).count())]
        for name in ("model", "lora", "vae", "upscaler", "restorer", "sampler")
    }
    res["strength_label"] = d.strength_text.text()


def _column(win, d):
    """The other dockers sharing `d`'s side of the window, on screen (not a hidden tab), and their heights."""
    QDockWidget = kit.qt().QtWidgets.QDockWidget
    area = win.dockWidgetArea(d)
    return [[o.objectName(), o.height()] for o in win.findChildren(QDockWidget)
            if o is not d and o.isVisible() and not o.visibleRegion().isEmpty() and not o.isFloating()
            and win.dockWidgetArea(o) == area]  # fmt: skip


def sc_workspace(res):
    """The docker in Krita's default workspace (1280x800), seen for the first time: Krita 5 shows it at
    the first start (the test profile's warm-up start was that), Krita 6 when a person turns it on in
    Settings > Dockers. Here it is turned on from that menu in a profile where it has claimed its height
    already (the height Krita gives it), then as if for the first time; then the person shrinks it by
    hand and turns it off and on again."""
    from sdbridge.docker import SIZED_KEY

    kit.settings()
    kit.new_doc("workspace")
    app, d = Krita.instance(), kit.docker()
    win = app.activeWindow().qwindow()
    toggle = d.toggleViewAction().trigger  # what the Settings > Dockers > sdbridge menu entry does
    res["at_start"] = {"visible": d.isVisible(), "sized": app.readSetting("sdbridge", SIZED_KEY, "")}
    if d.isVisible():
        toggle()
    win.showNormal()
    win.resize(*SHOT)
    yield from _settle(10)
    app.writeSetting("sdbridge", SIZED_KEY, "true")
    toggle()
    yield from _settle(10)
    res["unclaimed"] = d.height()
    toggle()
    app.writeSetting("sdbridge", SIZED_KEY, "")  # a profile that never showed it
    yield from _settle(3)
    toggle()
    yield from _settle(10)
    want = d.wanted_height(win)
    res["shown"] = {"visible": d.isVisible(), "floating": d.isFloating(), "height": d.height(), "want": want,
                    "column": _column(win, d), "sized": app.readSetting("sdbridge", SIZED_KEY, ""),
                    "shot": _shot(win, "window-workspace-1280x800.png")}  # fmt: skip
    win.resizeDocks([d], [want], kit.qt().Qt.Orientation.Vertical)  # would Qt give it more?
    yield from _settle(5)
    res["pushed"] = d.height()
    win.resizeDocks([d], [150], kit.qt().Qt.Orientation.Vertical)  # the user drags the splitter up
    yield from _settle(5)
    res["shrunk"] = d.height()
    toggle()
    yield from _settle(3)
    toggle()
    yield from _settle(10)
    res["again"] = {"visible": d.isVisible(), "height": d.height()}


SCENARIOS = {"layout": sc_layout, "workspace": sc_workspace}
