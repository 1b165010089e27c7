"""The sdbridge docker: connection, model and sampling settings, actions, progress, preview, queue.

Every widget writes its setting to Krita's settings store on change, and actions read the store,
so the docker, shortcuts and users' scripts always agree on what a job will use.
"""

from __future__ import annotations

from typing import Any

from krita import DockWidget, DockWidgetFactoryBase  # type: ignore[import-not-found]

from ._common import geometry
from .controller import Controller, read_settings, write_setting
from .qt import QImage, QPixmap, Qt, QtWidgets

W = QtWidgets


class DockerFactory(DockWidgetFactoryBase):
    """Krita asks the factory for a docker per main window; every docker shows the one controller."""

    def __init__(self, controller: Controller) -> None:
        super().__init__("sdbridge_docker", DockWidgetFactoryBase.DockPosition.DockRight)
        self.controller = controller

    def createDockWidget(self) -> SDBridgeDocker:
        return SDBridgeDocker(self.controller)


class SDBridgeDocker(DockWidget):
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.setWindowTitle("sdbridge")
        self.controller = controller
        root = W.QWidget(self)
        self.setWidget(root)
        form = W.QFormLayout()
        outer = W.QVBoxLayout(root)
        self.deps = W.QLabel()
        self.deps.setWordWrap(True)
        self.deps.setStyleSheet("color: #d33; font-weight: bold")
        outer.addWidget(self.deps)
        outer.addLayout(form)
        s = read_settings()

        self.url = self._line(s.url, "url")
        self.token = self._line(s.token, "token")
        self.token.setEchoMode(W.QLineEdit.EchoMode.Password)
        connect = W.QPushButton("Connect")
        connect.clicked.connect(lambda: self.controller.connect())
        form.addRow("Server", _row(self.url, connect))
        form.addRow("Token", self.token)
        self.status = W.QLabel()
        self.status.setWordWrap(True)
        form.addRow(self.status)

        self.model = W.QComboBox()
        self.model.setEditable(True)
        self.model.setCurrentText(s.model)
        self.model.currentTextChanged.connect(lambda t: write_setting("model", t))
        form.addRow("Model", self.model)
        self.prompt = self._text(s.prompt, "prompt", "prompt")
        form.addRow("Prompt", self.prompt)
        self.negative = self._text(s.negative, "negative", "negative prompt")
        form.addRow("Negative", self.negative)

        self.seed = self._spin(s.seed, "seed", -1, 2**31 - 1)
        self.fixed = W.QCheckBox("fixed seed")
        self.fixed.setChecked(s.fixed_seed)
        self.fixed.toggled.connect(lambda v: write_setting("fixed_seed", v))
        form.addRow("Seed", _row(self.seed, self.fixed))
        self.steps = self._spin(s.steps, "steps", 1, 150)
        self.cfg = self._dspin(s.cfg, "cfg", 0.0, 30.0, 0.5)
        form.addRow("Steps", _row(self.steps, "CFG", self.cfg))
        self.sampler = W.QComboBox()
        self.sampler.setEditable(True)
        self.sampler.setCurrentText(s.sampler)
        self.sampler.currentTextChanged.connect(lambda t: write_setting("sampler", t))
        form.addRow("Sampler", self.sampler)
        self.strength = self._dspin(s.strength, "strength", 0.01, 1.0, 0.05)
        self.batch = self._spin(s.batch, "batch", 1, 8)
        form.addRow("Strength", _row(self.strength, "Batch", self.batch))
        self.width_ = self._spin(s.width, "width", 0, 8192)
        self.height_ = self._spin(s.height, "height", 0, 8192)
        form.addRow("Size (0 = canvas)", _row(self.width_, "×", self.height_))
        self.side = W.QComboBox()
        self.side.addItems(list(geometry.SIDES))
        self.side.setCurrentText(s.outpaint_side)
        self.side.currentTextChanged.connect(lambda t: write_setting("outpaint_side", t))
        self.extend = self._spin(s.outpaint_pixels, "outpaint_pixels", 8, 4096)
        form.addRow("Outpaint", _row(self.side, self.extend))
        self.scale = self._dspin(s.upscale_scale, "upscale_scale", 1.25, 8.0, 0.25)
        form.addRow("Upscale ×", self.scale)

        buttons = W.QGridLayout()
        for i, (kind, label) in enumerate(
            [
                ("generate", "Generate"),
                ("outpaint", "Outpaint"),
                ("face", "Face"),
                ("restore", "Restore"),
                ("upscale", "Upscale"),
                ("cancel", "Cancel"),
            ]
        ):
            b = W.QPushButton(label)
            b.clicked.connect(lambda _c=False, k=kind: self.controller.run_action(k))
            buttons.addWidget(b, i // 3, i % 3)
        outer.addLayout(buttons)
        self.bar = W.QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        outer.addWidget(self.bar)
        self.preview = W.QLabel()
        self.preview.setMinimumHeight(128)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        outer.addWidget(self.preview)
        self.message = W.QLabel()
        self.message.setWordWrap(True)
        outer.addWidget(self.message)
        self.queue = W.QListWidget()
        self.queue.setMaximumHeight(90)
        outer.addWidget(self.queue)
        outer.addStretch(1)
        self.controller.listeners.append(self.refresh)
        self.refresh()

    # --- widget helpers that persist to the settings store ---------------------------------

    def _line(self, value: str, key: str) -> Any:
        w = W.QLineEdit(value)
        w.editingFinished.connect(lambda: write_setting(key, w.text().strip()))
        return w

    def _text(self, value: str, key: str, hint: str) -> Any:
        w = W.QPlainTextEdit(value)
        w.setPlaceholderText(hint)
        w.setMaximumHeight(60)
        w.textChanged.connect(lambda: write_setting(key, w.toPlainText()))
        return w

    def _spin(self, value: int, key: str, lo: int, hi: int) -> Any:
        w = W.QSpinBox()
        w.setRange(lo, hi)
        w.setValue(value)
        w.valueChanged.connect(lambda v: write_setting(key, v))
        return w

    def _dspin(self, value: float, key: str, lo: float, hi: float, step: float) -> Any:
        w = W.QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setValue(value)
        w.valueChanged.connect(lambda v: write_setting(key, v))
        return w

    # --- view update -----------------------------------------------------------------------

    def refresh(self) -> None:
        c = self.controller
        self.deps.setText(c.deps_error or "")
        self.deps.setVisible(bool(c.deps_error))
        self.status.setText(c.status)
        self.message.setText(c.message)
        step, total = c.progress
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(step)
        welcome = c.welcome
        if welcome:
            self._fill(self.model, [m.get("name", "") for m in welcome.get("models", [])])
            self._fill(self.sampler, list(welcome.get("samplers", [])))
        if c.preview is not None:
            w, h, bgra = c.preview
            img = QImage(bgra, w, h, w * 4, QImage.Format.Format_ARGB32).copy()
            pix = QPixmap.fromImage(img).scaled(
                self.preview.width(),
                160,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            self.preview.setPixmap(pix)
        elif not c.pending:
            self.preview.clear()
        self.queue.clear()
        for job in c.queue():
            where = f"#{job.position}" if job.status == "queued" else f"{job.step}/{job.total}"
            self.queue.addItem(f"{job.request.kind} · {job.status} {where}")

    def _fill(self, combo: Any, items: list[str]) -> None:
        current = combo.currentText()
        if [combo.itemText(i) for i in range(combo.count())] == items:
            return
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(items)
        combo.setCurrentText(current)
        combo.blockSignals(False)

    def canvasChanged(self, canvas: Any) -> None:  # required by DockWidget
        pass


def _row(*items: Any) -> Any:
    """Widgets side by side in one form row; a string becomes a label between them."""
    row = W.QHBoxLayout()
    for item in items:
        row.addWidget(W.QLabel(item) if isinstance(item, str) else item)
    return row
