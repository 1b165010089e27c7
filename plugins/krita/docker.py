"""The sdbridge docker: tabs Generate / Edit / Upscale / Settings over a fixed bottom part (progress
and Cancel, the message line, the review panel), all inside one scroll area, so it fits any height.

Each tab's fields scroll; its action buttons sit below them and never move: the message line has a
fixed height (long texts are elided, the tooltip has all of it). Every widget writes its setting
to Krita's settings store on change, and actions read the store, so the docker, shortcuts and
users' scripts always agree on what a job will use.
"""

from __future__ import annotations

from typing import Any

from krita import DockWidget, DockWidgetFactoryBase, Krita  # type: ignore[import-not-found]

from ._common import actions, choices, geometry, settings
from .control_panel import ControlPanel
from .controller import Controller, read_settings, write_setting
from .live_panel import LivePanel
from .qt import Qt, QTimer, QtWidgets
from .region_panel import RegionPanel
from .review_panel import ReviewPanel
from .widgets import Form, Picker, row, scroll_page

W = QtWidgets
SIZED_KEY = "docker_sized"  # set once the docker has claimed its first height in this profile
SHARE_OF_WINDOW = 0.6  # the most of the main window's height that first claim takes
ACTION_BUTTONS = {
    "generate": ("Generate", "Generate: txt2img, img2img below 100 %, inpaint with a selection"),
    "outpaint": ("Outpaint", "Extend the canvas on the chosen side, or fill a selection at an edge"),
    "face": ("Face", "Re-render faces (the selected one, or every detected face) at the face strength"),
    "restore": ("Restore", "Run the face restoration model (inside the selection, if any)"),
    "upscale": ("Upscale", "Upscale the document with tiled refine (or refine only the selection)"),
}


class DockerFactory(DockWidgetFactoryBase):
    """Krita asks the factory for a docker per main window; every docker shows the one controller."""

    def __init__(self, controller: Controller) -> None:
        super().__init__("sdbridge_docker", DockWidgetFactoryBase.DockPosition.DockRight)
        self.controller = controller

    def createDockWidget(self) -> SDBridgeDocker:
        return SDBridgeDocker(self.controller)


def _strength(v: float) -> str:
    return actions.strength_label(v)


def _refine(v: float) -> str:
    return "Upscaler only" if v <= 0 else f"Refine {round(v * 100)} %"


class SDBridgeDocker(DockWidget):
    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.setWindowTitle("sdbridge")
        self.controller = controller
        self.form = Form()
        self.buttons: dict[str, Any] = {}
        root = W.QWidget()
        outer = _Column(root)
        outer.setContentsMargins(4, 4, 4, 4)
        self.deps = self._label("color: #d33; font-weight: bold", wrap=True)
        outer.addWidget(self.deps)
        self.status = self._label("", lines=1)
        self.status.setObjectName("sdbridge_status")
        outer.addWidget(self.status)
        self.tabs = W.QTabWidget()
        self.tabs.setObjectName("sdbridge_tabs")
        self.tabs.addTab(self._generate_tab(), "Generate")
        self.tabs.addTab(self._edit_tab(), "Edit")
        self.tabs.addTab(self._upscale_tab(), "Upscale")
        # Control layers and Settings as icons: five worded tabs do not fit a docker of Krita's default width.
        self.controls = ControlPanel(controller)
        icon = Krita.instance().icon("krita_tool_reference_images")
        self.tabs.addTab(scroll_page(self.controls), icon, "" if not icon.isNull() else "Control")
        self.tabs.setTabToolTip(3, "Control layers: layers that guide every job (ControlNet, IP-Adapter)")
        gear = Krita.instance().icon("configure")
        self.tabs.addTab(self._settings_tab(), gear, "" if not gear.isNull() else "Settings")
        self.tabs.setTabToolTip(4, "Settings: server, token, steps, CFG, sampler, schedule type, VAE")
        self.regions = RegionPanel(controller)  # before Control: an icon tab, like the two after it
        area = Krita.instance().icon("tool_rect_selection")
        self.tabs.insertTab(3, scroll_page(self.regions), area, "" if not area.isNull() else "Regions")
        self.tabs.setTabToolTip(3, "Regions: a prompt per area of the canvas, from layers")
        self.tabs.insertTab(1, LivePanel(controller, self.form, self.prompt), "Live")
        outer.addWidget(self.tabs, 1)
        self.bar = W.QProgressBar()
        self.bar.setObjectName("sdbridge_progress")
        self.bar.setRange(0, 1)
        self.cancel = W.QPushButton("Cancel")
        self.cancel.setObjectName("sdbridge_cancel")
        self.cancel.setToolTip("Cancel this window's queued and running jobs")
        self.cancel.clicked.connect(lambda: self.controller.run_action("cancel"))
        outer.addLayout(row(self.bar, self.cancel))
        self.message = self._label("", lines=2)
        self.message.setObjectName("sdbridge_message")
        outer.addWidget(self.message)
        self.review = ReviewPanel(controller, on_reuse=self.load_settings)
        outer.addWidget(self.review)
        self.setWidget(scroll_page(root, full_rows=False))
        self.load_settings()
        self.controller.listeners.append(self.refresh)
        self.refresh()
        self.visibilityChanged.connect(self._shown)

    def _shown(self, visible: bool) -> None:
        """In Krita's default workspace the docker lands under three others, about 160 px high (Krita 5
        shows it so on the first start, Krita 6 when it is turned on in Settings ▸ Dockers): one line
        of prompt, the progress bar and the results out of sight. The first time it is seen docked
        (once per profile, so a layout the user made is never undone) it takes the height its content
        wants, up to 60 % of the window, from its neighbours — what dragging the splitter would do;
        they keep at least their minimum height."""
        if visible and Krita.instance().readSetting(settings.GROUP, SIZED_KEY, "") != "true":
            QTimer.singleShot(0, self._claim_height)  # once Krita has placed the dock it just showed

    def _claim_height(self) -> None:
        win = self.parentWidget()
        if not self.isVisible() or self.isFloating() or not isinstance(win, W.QMainWindow):
            return
        write_setting(SIZED_KEY, True)
        self._grow(win, self.wanted_height(win), tries=4)

    def wanted_height(self, win: Any) -> int:
        """All of the content without scrolling, title bar included, but at most 60 % of the window."""
        title = self.height() - self.widget().height()
        return min(self.widget().widget().sizeHint().height() + title, int(win.height() * SHARE_OF_WINDOW))

    def _grow(self, win: Any, want: int, tries: int) -> None:
        """Qt hands over only part of the height per call (Krita 6 gave 276 px, then 311 px): ask again
        while it still gives."""
        before = self.height()
        if before >= want or tries == 0:
            return
        win.resizeDocks([self], [want], Qt.Orientation.Vertical)
        QTimer.singleShot(0, lambda: self.height() > before and self._grow(win, want, tries - 1))

    # --- tabs -------------------------------------------------------------------------------

    def _page(self, form: Any, *kinds: str) -> Any:
        """A tab: its fields scroll, its buttons stay below them."""
        page = W.QWidget()
        box = W.QVBoxLayout(page)
        box.setContentsMargins(2, 2, 2, 2)
        box.addWidget(scroll_page(_fields(form)), 1)
        buttons = W.QHBoxLayout()
        for kind in kinds:
            text, tip = ACTION_BUTTONS[kind]
            b = W.QPushButton(text)
            b.setObjectName(f"sdbridge_{kind}")
            b.setToolTip(tip)
            b.clicked.connect(lambda _c=False, k=kind: self.controller.run_action(k))
            self.buttons[kind] = b
            buttons.addWidget(b)
        box.addLayout(buttons)
        return page

    def _formlayout(self) -> Any:
        form = W.QFormLayout()
        # Rows never wrap: a scroll area cannot follow a wrapped (height-for-width) layout, and the
        # last rows would be cut off; the page is as wide as its widest row instead.
        form.setRowWrapPolicy(W.QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setFieldGrowthPolicy(W.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setContentsMargins(0, 0, 4, 0)
        return form

    def _generate_tab(self) -> Any:
        f, form = self.form, self._formlayout()
        self.model = f.combo("model", "Server default")
        form.addRow("Model", self.model)
        self.prompt = f.text("prompt", "prompt: what to draw", lines=3)
        form.addRow(self.prompt)
        self.negative = f.text("negative", "negative prompt: what to avoid", lines=2)
        form.addRow(self.negative)
        self.lora = Picker(None, "(LoRA to insert)")
        insert = W.QPushButton("Insert")
        insert.setToolTip("Add the LoRA's <lora:name:1> tag to the prompt")
        insert.clicked.connect(self._insert_lora)
        form.addRow(row(self.lora, insert))
        self.strength, self.strength_text = f.slider("strength", 1, 100, _strength)
        self.strength.setToolTip("100 %: generate from scratch; below: refine what is on the canvas")
        form.addRow("Strength", row(self.strength, self.strength_text))
        self.seed = f.spin("seed", -1, 2**31 - 1, special="random")
        self.fixed = f.check("fixed_seed", "Seed")
        self.fixed.setToolTip("Checked: every job uses this seed. Unchecked: a new random seed each time")
        form.addRow(self.fixed, self.seed)
        self.batch = f.spin("batch", 1, 8)
        form.addRow("Batch", self.batch)
        self.width_ = f.spin("width", 0, 8192, special="canvas")
        self.height_ = f.spin("height", 0, 8192, special="canvas")
        form.addRow("Size", row(self.width_, "×", self.height_))
        return self._page(form, "generate")

    def _edit_tab(self) -> Any:
        f, form = self.form, self._formlayout()
        self.side = f.choice("outpaint_side", list(geometry.SIDES))
        self.extend = f.spin("outpaint_pixels", 8, 4096)
        self.extend.setSuffix(" px")
        form.addRow("Outpaint", row(self.side, self.extend))
        self.face_strength, self.face_text = f.slider("face_strength", 5, 100, lambda v: f"{round(v * 100)} %")
        self.face_strength.setToolTip("How much Face re-renders a face")
        form.addRow("Face", row(self.face_strength, self.face_text))
        self.restorer = f.combo("restorer", "Server default")
        form.addRow("Restorer", self.restorer)
        return self._page(form, "outpaint", "face", "restore")

    def _upscale_tab(self) -> Any:
        f, form = self.form, self._formlayout()
        self.upscaler = f.combo("upscaler", "Lanczos (no model)")
        form.addRow("Upscaler", self.upscaler)
        self.scale = f.dspin("upscale_scale", 1.25, 8.0, 0.25, suffix=" ×")
        form.addRow("Scale", self.scale)
        self.up_strength, self.up_text = f.slider("upscale_strength", 0, 100, _refine)
        form.addRow("Refine", row(self.up_strength, self.up_text))
        return self._page(form, "upscale")

    def _settings_tab(self) -> Any:
        f, form = self.form, self._formlayout()
        self.url = f.line("url")
        connect = W.QPushButton("Connect")
        connect.setObjectName("sdbridge_connect")
        connect.clicked.connect(lambda: self.controller.connect())
        form.addRow("Server", row(self.url, connect))
        self.token = f.line("token", password=True)
        form.addRow("Token", self.token)
        self.steps = f.spin("steps", 1, 150)
        form.addRow("Steps", self.steps)
        self.cfg = f.dspin("cfg", 0.0, 30.0, 0.5)
        form.addRow("CFG", self.cfg)
        self.sampler = f.choice("sampler", [])
        self.sampler.setEditable(True)
        form.addRow("Sampler", self.sampler)
        self.schedule = f.choice("schedule", [read_settings().schedule])  # the sampler's types once connected
        self.schedule.setObjectName("sdbridge_schedule")
        self.schedule.setToolTip("Schedule type: where the steps sit on the noise scale (A1111's Schedule type)")
        self.sampler.currentTextChanged.connect(lambda _t: self.refresh())
        form.addRow("Schedule", self.schedule)
        self.vae = f.combo("vae", "The model's own")
        form.addRow("VAE", self.vae)
        page = W.QWidget()
        box = W.QVBoxLayout(page)
        box.setContentsMargins(2, 2, 2, 2)
        box.addWidget(scroll_page(_fields(form)), 1)
        return page

    # --- helpers ----------------------------------------------------------------------------

    def _label(self, style: str, lines: int = 0, wrap: bool = False) -> Any:
        """A label; `lines` > 0 gives it a fixed height (texts never push the buttons around)."""
        w = W.QLabel()
        w.setWordWrap(wrap or lines > 1)
        w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        policy = W.QSizePolicy.Policy
        w.setSizePolicy(policy.Ignored, policy.Fixed if lines else policy.Preferred)
        if style:
            w.setStyleSheet(style)
        if lines:
            w.setFixedHeight(w.fontMetrics().lineSpacing() * lines + 4)
        return w

    def _insert_lora(self) -> None:
        name = self.lora.value()
        if not name:
            self.controller.say("Pick a LoRA to insert")
            return
        self.prompt.setPlainText(actions.insert_tag(self.prompt.toPlainText(), actions.lora_tag(name)))

    def load_settings(self) -> None:
        self.form.load(read_settings())

    # --- view update ------------------------------------------------------------------------

    def refresh(self) -> None:
        c = self.controller
        self.deps.setText(c.deps_error or "")
        self.deps.setVisible(bool(c.deps_error))
        _elided(self.status, c.status)
        _elided(self.message, c.message)
        step, total = c.progress
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(step)
        jobs = c.queue()
        # The queue rides on the progress bar: no extra row, nothing that moves.
        self.bar.setFormat(
            f"{step}/{total}" + (f" · {len(jobs) - 1} more queued" if len(jobs) > 1 else "") if total else ""
        )
        self.bar.setToolTip("\n".join(f"{j.request.kind}: {j.status}" for j in jobs) or "No jobs")
        self.cancel.setEnabled(bool(c.pending))
        welcome = c.welcome
        if welcome:
            self.model.offer(choices.models(welcome))
            self.lora.offer(choices.loras(welcome))
            self.vae.offer(choices.vaes(welcome))
            self.upscaler.offer(choices.upscalers(welcome))
            self.restorer.offer(choices.restorers(welcome))
            _fill_choice(self.sampler, choices.names(welcome, "samplers"), "sampler")
            _fill_choice(self.schedule, choices.schedules(welcome, self.sampler.currentText()), "schedule")
        self.controls.refresh()
        self.review.refresh()

    def canvasChanged(self, canvas: Any) -> None:  # required by DockWidget: the active view changed
        self.refresh()


def _fields(form: Any) -> Any:
    """A tab's form on a widget; spare height goes below the rows, never into them."""
    fields = W.QWidget()
    box = W.QVBoxLayout(fields)
    box.setContentsMargins(0, 0, 0, 0)
    box.addLayout(form)
    box.addStretch(1)
    return fields


class _Column(W.QVBoxLayout):  # type: ignore[misc,name-defined]
    """The docker's column. A scroll area sizes a height-for-width layout (any word-wrapped label
    makes one) by its preferred height, not its minimum: the docker would always scroll. The
    labels here have fixed heights, so the column's height never depends on its width."""

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt's name)
        return False


def _elided(label: Any, text: str) -> None:
    """Fixed-height labels show what fits; the tooltip always has the whole text."""
    label.setToolTip(text)
    if label.wordWrap():
        label.setText(text)
    else:
        label.setText(label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, max(40, label.width())))


def _fill_choice(combo: Any, items: list[str], key: str) -> None:
    if [combo.itemText(i) for i in range(combo.count())] == items:
        return
    current = combo.currentText() or getattr(read_settings(), key)
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    combo.setCurrentText(current)
    combo.blockSignals(False)
    if combo.currentText() != current:
        write_setting(key, combo.currentText())
