"""The docker's Regions tab: the active document's regions (region_layers.py), one row each — on/off,
prompt, negative prompt, strength, select its layer, remove — and the buttons New region from selection,
New region from layer group and Show masks.

The rows follow the layers: renaming a layer to `region: …` in the Layers docker adds a row, deleting
it takes the row away. Krita's scripting API has no signal for layer changes, so the tab looks again
every POLL_MS while it is on screen (a walk of the layer tree; rows are rebuilt only when the list of
regions changed, and a field being typed in is never overwritten).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import document, region_layers, regions
from .controller import Controller, log
from .qt import QTimer, QtWidgets
from .widgets import row

W = QtWidgets
POLL_MS = 400
BACKGROUND_NOTE = (
    "A prompt per area of the canvas: each region's layer is its mask. The Generate tab's prompt is the "
    "background: it covers what no region does."
)


class RegionRow(W.QFrame):  # type: ignore[misc,name-defined]
    """One region: [on] [colour] prompt / negative, strength, select, remove."""

    def __init__(self, panel: RegionPanel, entry: region_layers.Entry) -> None:
        super().__init__()
        self.layer = entry.layer
        self.setFrameShape(W.QFrame.Shape.StyledPanel)
        self.setObjectName("sdbridge_region_row")
        edit = panel.edit
        self.on = W.QCheckBox()
        self.on.setToolTip("On: the region guides the jobs (its layer is visible)")
        self.on.toggled.connect(lambda v: edit("region on/off", region_layers.set_on, self.layer, bool(v)))
        self.swatch = W.QLabel()
        self.swatch.setFixedSize(12, 12)
        self.swatch.setToolTip("The region's colour in Show masks")
        self.prompt = W.QLineEdit()
        self.prompt.setObjectName("sdbridge_region_prompt")
        self.prompt.setPlaceholderText("what to draw here (required)")
        self.prompt.setToolTip("The region's prompt; it is the layer's name after 'region:'")
        self.prompt.editingFinished.connect(
            lambda: edit("region prompt", region_layers.set_prompt, self.layer, self.prompt.text())
        )
        self.negative = W.QLineEdit()
        self.negative.setObjectName("sdbridge_region_negative")
        self.negative.setPlaceholderText("negative (default: the job's)")
        self.negative.editingFinished.connect(
            lambda: edit("region negative", region_layers.set_negative, self.layer, self.negative.text())
        )
        self.strength = W.QSpinBox()
        self.strength.setObjectName("sdbridge_region_strength")
        self.strength.setRange(0, 100)
        self.strength.setSuffix(" %")
        self.strength.setToolTip("Strength: how much of its area the region takes (the layer's opacity)")
        self.strength.valueChanged.connect(lambda v: edit("region strength", region_layers.set_strength, self.layer, v))
        self.pick = W.QToolButton()
        self.pick.setText("Layer")
        self.pick.setToolTip("Select the region's layer in the Layers docker (to paint its mask)")
        self.pick.clicked.connect(lambda: edit("select region", region_layers.select, self.layer))
        self.remove = W.QToolButton()
        self.remove.setText("✕")
        self.remove.setObjectName("sdbridge_region_remove")
        self.remove.setToolTip("Remove the region: a region paint layer is deleted, a group keeps its layers")
        self.remove.clicked.connect(lambda: panel.remove(self.layer))
        box = W.QVBoxLayout(self)
        box.setContentsMargins(3, 3, 3, 3)
        box.setSpacing(2)
        box.addLayout(row(self.on, self.swatch, self.prompt))
        box.addLayout(row(self.negative, self.strength, self.pick, self.remove))
        self.fields = (self.on, self.prompt, self.negative, self.strength)
        self.show_entry(entry)

    def show_entry(self, e: region_layers.Entry) -> None:
        """The entry's values, except in a field the user is typing in."""
        for w in self.fields:
            w.blockSignals(True)
        try:
            self.on.setChecked(e.on)
            self.swatch.setStyleSheet("background: rgb({}, {}, {}); border: 1px solid #777".format(*e.color))
            if not self.prompt.hasFocus():
                self.prompt.setText(e.prompt)
            if not self.negative.hasFocus():
                self.negative.setText(e.negative)
            if not self.strength.hasFocus():
                self.strength.setValue(e.percent)
            self.pick.setToolTip(f"Select the region's {'group' if e.group else 'layer'} in the Layers docker")
        finally:
            for w in self.fields:
                w.blockSignals(False)


class RegionPanel(W.QWidget):  # type: ignore[misc,name-defined]
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller
        self._shown: tuple[region_layers.Entry, ...] | None = None
        self.rows: list[RegionRow] = []
        box = W.QVBoxLayout(self)
        box.setContentsMargins(2, 2, 2, 2)
        note = W.QLabel(BACKGROUND_NOTE)
        note.setWordWrap(True)
        note.setObjectName("sdbridge_region_note")
        box.addWidget(note)
        self.list = W.QWidget()
        self.list.setObjectName("sdbridge_region_list")
        self.list_box = W.QVBoxLayout(self.list)
        self.list_box.setContentsMargins(0, 0, 0, 0)
        self.list_box.setSpacing(3)
        self.empty = W.QLabel("No regions yet: select an area and press New region from selection.")
        self.empty.setWordWrap(True)
        self.list_box.addWidget(self.empty)
        self.list_box.addStretch(1)
        area = W.QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(W.QFrame.Shape.NoFrame)
        area.setWidget(self.list)
        area.setMinimumHeight(area.fontMetrics().lineSpacing() * 4)
        box.addWidget(area, 1)
        self.from_selection = self._button(
            "New region from selection", "from_selection", "A new region whose mask is the selection (soft edges kept)"
        )
        self.from_selection.clicked.connect(lambda: self._new("region from selection", region_layers.from_selection))
        self.from_group = self._button(
            "New region from layer group", "from_group", "The active group becomes a region (a layer: grouped first)"
        )
        self.from_group.clicked.connect(lambda: self._new("region from group", region_layers.from_group))
        self.masks = self._button(
            "Show masks", "masks", "Tint each region's area on the canvas (a locked layer, never sent to the server)"
        )
        self.masks.setCheckable(True)
        self.masks.toggled.connect(self._toggle_masks)
        box.addWidget(self.from_selection)
        box.addLayout(row(self.from_group, self.masks))
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()
        controller.listeners.append(self.refresh)

    def _button(self, text: str, name: str, tip: str) -> Any:
        b = W.QPushButton(text)
        b.setObjectName(f"sdbridge_region_{name}")
        b.setToolTip(tip)
        return b

    # --- edits -------------------------------------------------------------------------------------

    def edit(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        if self.controller.on_document(what, lambda doc: fn(doc, *args)):
            self.refresh()

    def _new(self, what: str, make: Callable[[Any], Any]) -> None:
        made: list[Any] = []
        if not self.controller.on_document(what, lambda doc: made.append(make(doc))):
            return
        self.controller.say("New region: type its prompt in the list (it names the layer)")
        self.refresh()
        ident = region_layers.layer_id(made[0])
        for r in self.rows:
            if r.layer == ident:
                r.prompt.setFocus()  # asks for the prompt where it is typed

    def remove(self, ident: str) -> None:
        said: list[str] = []
        if self.controller.on_document("remove region", lambda doc: said.append(region_layers.remove(doc, ident))):
            self.controller.say(said[0])
            self.refresh()

    def _toggle_masks(self, on: bool) -> None:
        self.edit("show masks", region_layers.show_masks if on else region_layers.hide_masks)

    # --- view --------------------------------------------------------------------------------------

    def _poll(self) -> None:
        if not self.isVisible():
            return
        try:
            self.refresh()
        except Exception as exc:  # a document closing under the timer: the next tick looks again
            log(f"regions tab: {type(exc).__name__}: {exc}")

    def refresh(self) -> None:
        doc = document.active_document()
        entries = region_layers.listing(doc) if doc is not None else ()
        overlay = doc is not None and regions.overlay(doc) is not None
        if self.masks.isChecked() != overlay:
            self.masks.blockSignals(True)
            self.masks.setChecked(overlay)
            self.masks.blockSignals(False)
        label = "Hide masks" if overlay else "Show masks"  # a pressed button alone is easy to miss
        if self.masks.text() != label:
            self.masks.setText(label)
        if entries == self._shown:
            return
        before, self._shown = self._shown, entries  # set first: redrawing the preview notifies listeners (us)
        if overlay and before is not None:  # the preview follows the list
            self.controller.on_document("show masks", region_layers.show_masks)
        if [e.layer for e in entries] != [r.layer for r in self.rows]:
            for r in self.rows:
                self.list_box.removeWidget(r)
                r.deleteLater()
            self.rows = [RegionRow(self, e) for e in entries]
            for i, r in enumerate(self.rows):
                self.list_box.insertWidget(i, r)
        else:
            for r, e in zip(self.rows, entries, strict=True):
                r.show_entry(e)
        self.empty.setVisible(not entries)
