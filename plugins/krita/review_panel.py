"""The docker's review panel: the step preview while a job runs, the chosen result otherwise; the
history strip (one thumbnail per result image, newest last); Apply / To selection / Discard / Reuse.

Clicking a thumbnail puts that result on the document's preview layer. Thumbnails are decoded once
per entry and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .controller import Controller
from .qt import QIcon, QImage, QPixmap, Qt, QtCore, QtWidgets, bgra_image

W = QtWidgets
THUMB = 48
PREVIEW_H = 96  # the monitor (step preview / chosen result) and the strip beside it share one row
ROLE = Qt.ItemDataRole.UserRole


class ReviewPanel(W.QWidget):  # type: ignore[misc,name-defined]
    def __init__(self, controller: Controller, on_reuse: Callable[[], None]) -> None:
        super().__init__()
        self.controller = controller
        self.on_reuse = on_reuse
        self._icons: dict[str, Any] = {}
        self._images: dict[str, Any] = {}
        self._signature: tuple[Any, ...] = ()
        box = W.QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        top = W.QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        box.addLayout(top)
        self.preview = W.QLabel()
        self.preview.setObjectName("sdbridge_preview")
        self.preview.setFixedSize(PREVIEW_H, PREVIEW_H)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setWordWrap(True)
        self.preview.setFrameShape(W.QFrame.Shape.StyledPanel)
        top.addWidget(self.preview)
        self.strip = W.QListWidget()
        self.strip.setObjectName("sdbridge_history")
        self.strip.setViewMode(W.QListView.ViewMode.IconMode)
        self.strip.setFlow(W.QListView.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setMovement(W.QListView.Movement.Static)
        self.strip.setIconSize(QtCore.QSize(THUMB, THUMB))
        self.strip.setFixedHeight(PREVIEW_H)
        self.strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.strip.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.strip.setToolTip("Results of this document, newest last: click one to preview it on the canvas")
        self.strip.currentItemChanged.connect(self._picked)
        top.addWidget(self.strip, 1)
        grid = W.QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        self.apply = self._button("Apply", "Add the chosen result as a new layer named after its prompt and seed")
        self.apply_sel = self._button("Apply to selection", "Add it as a layer masked by the current selection")
        self.discard = self._button("Discard", "Remove the chosen result from the history")
        self.reuse = self._button("Reuse prompt + seed", "Put its prompt, negative prompt and seed back in the docker")
        self.apply.clicked.connect(lambda: self._with_current(self.controller.apply_entry))
        self.apply_sel.clicked.connect(lambda: self._with_current(lambda i: self.controller.apply_entry(i, True)))
        self.discard.clicked.connect(lambda: self._with_current(self.controller.discard_entry))
        self.reuse.clicked.connect(self._reuse)
        for i, b in enumerate((self.apply, self.apply_sel, self.discard, self.reuse)):
            grid.addWidget(b, i // 2, i % 2)
        box.addLayout(grid)

    def _button(self, text: str, tip: str) -> Any:
        b = W.QPushButton(text)
        b.setToolTip(tip)
        b.setObjectName("sdbridge_" + text.split()[0].lower() + ("_sel" if "selection" in text else ""))
        return b

    # --- user input ------------------------------------------------------------------------

    def current_id(self) -> str | None:
        item = self.strip.currentItem()
        return item.data(ROLE) if item is not None else None

    def _with_current(self, fn: Callable[[str], Any]) -> None:
        entry_id = self.current_id()
        if entry_id is None:
            self.controller.say("Pick a result in the history first")
            return
        fn(entry_id)

    def _picked(self, item: Any, _previous: Any) -> None:
        if item is not None:
            self.controller.show_entry(item.data(ROLE))

    def _reuse(self) -> None:
        def run(entry_id: str) -> None:
            if self.controller.reuse_entry(entry_id):
                self.on_reuse()

        self._with_current(run)

    # --- view ------------------------------------------------------------------------------

    def refresh(self) -> None:
        c = self.controller
        entries = c.entries()
        shown = c.shown_entry()
        signature = tuple((e.id, e.applied) for e in entries)
        if signature != self._signature:
            self._signature = signature
            self._fill(entries)
        self.strip.blockSignals(True)
        try:
            row = next((i for i, e in enumerate(entries) if e.id == shown), -1)
            if row >= 0 and self.strip.currentRow() != row:
                self.strip.setCurrentRow(row)
                self.strip.scrollToItem(self.strip.item(row))
        finally:
            self.strip.blockSignals(False)
        enabled = bool(entries)
        for b in (self.apply, self.apply_sel, self.discard, self.reuse):
            b.setEnabled(enabled)
        if c.preview is not None:
            w, h, bgra = c.preview
            self._show(QPixmap.fromImage(bgra_image(bgra, w, h)))
        elif shown is not None and shown in self._images:
            self._show(self._images[shown])
        elif not c.pending:
            self.preview.setText("No results yet" if not entries else "Pick a result")

    def _show(self, pix: Any) -> None:
        self.preview.setPixmap(
            pix.scaled(
                PREVIEW_H - 4,
                PREVIEW_H - 4,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    def _fill(self, entries: list[Any]) -> None:
        self.strip.blockSignals(True)
        try:
            self.strip.clear()
            for e in entries:
                label = ("✓ " if e.applied else "") + (str(e.seed) if e.seed is not None else e.kind)
                item = W.QListWidgetItem(self._icon(e), label)
                item.setData(ROLE, e.id)
                size = f"{e.rect.w}×{e.rect.h} at {e.rect.x},{e.rect.y}"
                item.setToolTip(f"{e.name}\n{e.kind}, {size}" + ("\napplied" if e.applied else ""))
                self.strip.addItem(item)
        finally:
            self.strip.blockSignals(False)
        live = {e.id for e in entries}
        for cache in (self._icons, self._images):
            for key in [k for k in cache if k not in live]:
                del cache[key]

    def _icon(self, entry: Any) -> Any:
        if entry.id not in self._icons:
            img = QImage()
            img.loadFromData(entry.image)
            pix = QPixmap.fromImage(img)
            self._images[entry.id] = pix
            self._icons[entry.id] = QIcon(
                pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )
        return self._icons[entry.id]
