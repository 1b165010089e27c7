"""The docker's Control tab: the active document's control layers (plugins/krita/controls.py). Add the
active layer, pick its control model, strength, preprocessor and the part of the run it guides, or
remove it; every diffusion job the docker runs on the document sends the enabled ones."""

from __future__ import annotations

from typing import Any

from . import controls, document
from ._common import choices
from .controller import Controller
from .qt import QtWidgets
from .widgets import Picker, row

W = QtWidgets


class ControlPanel(W.QWidget):  # type: ignore[misc,name-defined]
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self._shown: tuple[Any, ...] | None = None
        box = W.QVBoxLayout(self)
        box.setContentsMargins(2, 2, 2, 2)
        self.list = W.QListWidget()
        self.list.setObjectName("sdbridge_control_list")
        self.list.setMinimumHeight(self.list.fontMetrics().lineSpacing() * 3)
        self.list.currentRowChanged.connect(lambda _r: self._load_entry())
        box.addWidget(self.list, 1)
        self.add = W.QPushButton("Add active layer")
        self.add.setObjectName("sdbridge_control_add")
        self.add.setToolTip("Use the active layer as a control (it is read even when hidden)")
        self.add.clicked.connect(self._add)
        self.remove = W.QPushButton("Remove")
        self.remove.setObjectName("sdbridge_control_remove")
        self.remove.clicked.connect(lambda: self._edit("remove control", lambda doc, i: controls.remove(doc, i)))
        box.addLayout(row(self.add, self.remove))
        form = W.QFormLayout()
        self.enabled = W.QCheckBox("Guides the jobs")
        self.enabled.toggled.connect(lambda v: self._set(enabled=bool(v)))
        form.addRow(self.enabled)
        self.model = Picker(None, "No control")
        self.model.setObjectName("sdbridge_control_model")
        self.model.currentIndexChanged.connect(lambda _i: self._set(model=self.model.value()))
        form.addRow("Model", self.model)
        self.strength = self._dspin(0.0, 2.0, 0.05, "strength")
        form.addRow("Strength", self.strength)
        self.preprocess = W.QComboBox()
        for o in choices.preprocessors():
            self.preprocess.addItem(o.label, o.id)
        self.preprocess.currentIndexChanged.connect(lambda _i: self._set(preprocess=self.preprocess.currentData()))
        form.addRow("Preprocess", self.preprocess)
        self.start, self.end = self._dspin(0.0, 1.0, 0.05, "start"), self._dspin(0.0, 1.0, 0.05, "end")
        form.addRow("Steps", row(self.start, "to", self.end))
        box.addLayout(form)
        self._fields = (self.enabled, self.model, self.strength, self.preprocess, self.start, self.end)

    def _dspin(self, lo: float, hi: float, step: float, key: str) -> Any:
        w = W.QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.valueChanged.connect(lambda v: self._set(**{key: float(v)}))
        return w

    # --- edits -----------------------------------------------------------------------------------

    def _add(self) -> None:
        offered = [o.id for o in choices.controls(self.controller.welcome) if o.id]

        def run(doc: Any) -> None:
            entry = controls.add_active(doc, offered[0] if len(offered) == 1 else "")
            self.controller.message = f"Control layer '{entry.label()}' added"

        if self.controller.on_document("add control", run):
            self.refresh()
            self.list.setCurrentRow(self.list.count() - 1)

    def _set(self, **changes: Any) -> None:
        self._edit("control layer", lambda doc, i: controls.update(doc, i, **changes))

    def _edit(self, what: str, fn: Any) -> None:
        index = self.list.currentRow()
        if index < 0:
            return
        if self.controller.on_document(what, lambda doc: fn(doc, index)):
            self.refresh()

    # --- view ------------------------------------------------------------------------------------

    def refresh(self) -> None:
        welcome = self.controller.welcome
        if welcome:
            self.model.offer(choices.controls(welcome))
        doc = document.active_document()
        layers = tuple(controls.load(doc)) if doc is not None else ()
        if layers == self._shown:
            return
        self._shown = layers
        current = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        for c in layers:
            state = "" if c.enabled else " (off)"
            self.list.addItem(f"{c.label()} → {c.model or '(choose a model)'} · {c.strength:.2f}{state}")
        self.list.setCurrentRow(min(current, len(layers) - 1) if current >= 0 else len(layers) - 1)
        self.list.blockSignals(False)
        self._load_entry()

    def _load_entry(self) -> None:
        index = self.list.currentRow()
        entry = self._shown[index] if self._shown and 0 <= index < len(self._shown) else None
        for w in self._fields:
            w.blockSignals(True)
            w.setEnabled(entry is not None)
        try:
            self.remove.setEnabled(entry is not None)
            if entry is None:
                return
            self.enabled.setChecked(entry.enabled)
            self.model.select(entry.model)
            self.strength.setValue(entry.strength)
            self.preprocess.setCurrentIndex(max(0, self.preprocess.findData(entry.preprocess)))
            self.start.setValue(entry.start)
            self.end.setValue(entry.end)
        finally:
            for w in self._fields:
                w.blockSignals(False)
