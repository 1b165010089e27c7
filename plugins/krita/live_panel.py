"""The docker's Live tab (plugins/krita/live.py does the work): the on/off toggle, the prompt (the same
one the Generate tab edits), the few-step preset, strength, the fixed seed with "New seed", what live
is doing, and Apply (the live picture as a new layer)."""

from __future__ import annotations

import traceback
from typing import Any

from ._common import actions, live
from .controller import Controller
from .live import LiveSession
from .qt import Qt, QtWidgets
from .widgets import Form, row, scroll_page

W = QtWidgets
PRESET_TIP = (
    "Steps, CFG and sampler for a few-step model: add its LoRA to the prompt (Generate tab, Insert).\n"
    "LCM: an LCM LoRA · Hyper-SD: a Hyper-SD 8-step LoRA · Lightning: an SDXL-Lightning 8-step LoRA\n"
    "TCD: a TCD LoRA · Regular model: no LoRA (slower) · Custom: the Settings tab's sampler, steps, CFG"
)


class LivePanel(W.QWidget):  # type: ignore[misc,name-defined]
    def __init__(self, controller: Controller, form: Form, generate_prompt: Any) -> None:
        super().__init__()
        self.setObjectName("sdbridge_live")
        self.controller = controller
        self.session = LiveSession.of(controller)
        box = W.QVBoxLayout(self)
        box.setContentsMargins(2, 2, 2, 2)
        fields = W.QWidget()
        col = W.QVBoxLayout(fields)
        col.setContentsMargins(0, 0, 0, 0)
        self.toggle = W.QPushButton("Live: off")
        self.toggle.setObjectName("sdbridge_live_toggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("On: every change of the document sends a frame; the picture shows on the layer "
                               "[sdbridge live] at the top")  # fmt: skip
        self.toggle.toggled.connect(self._toggled)
        col.addWidget(self.toggle)
        lay = W.QFormLayout()
        lay.setRowWrapPolicy(W.QFormLayout.RowWrapPolicy.DontWrapRows)
        lay.setFieldGrowthPolicy(W.QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        # The Generate tab's prompt, edited here too: one picture in mind, refined live, then generated.
        self.prompt = form.text("prompt", "prompt (shared with Generate)", lines=2)
        self.prompt.setObjectName("sdbridge_live_prompt")
        _mirror(self.prompt, generate_prompt)
        lay.addRow(self.prompt)
        self.preset = form.choice("live_preset", list(live.PRESET_NAMES))
        self.preset.setObjectName("sdbridge_live_preset")
        self.preset.setToolTip(PRESET_TIP)
        lay.addRow("Preset", self.preset)
        self.strength, self.strength_text = form.slider("live_strength", 5, 100, _strength)
        self.strength.setObjectName("sdbridge_live_strength")
        self.strength.setToolTip("How far the picture may move away from your painting")
        lay.addRow("Strength", row(self.strength, self.strength_text))
        self.seed = form.spin("live_seed", 0, 2**31 - 1)
        self.seed.setObjectName("sdbridge_live_seed")
        self.seed.setToolTip("Fixed: the same painting gives the same picture, so only your strokes change it")
        new_seed = W.QPushButton("New seed")
        new_seed.setObjectName("sdbridge_live_new_seed")
        new_seed.clicked.connect(self._new_seed)
        lay.addRow("Seed", row(self.seed, new_seed))
        col.addLayout(lay)
        self.state = W.QLabel()
        self.state.setObjectName("sdbridge_live_state")
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        col.addWidget(self.state)
        col.addStretch(1)
        box.addWidget(scroll_page(fields), 1)
        self.apply = W.QPushButton("Apply live picture")
        self.apply.setObjectName("sdbridge_live_apply")
        self.apply.setToolTip("Copy the live picture to a new layer named 'live: prompt (seed)'")
        self.apply.clicked.connect(self._apply)
        box.addLayout(row(self.apply))
        for signal in (self.prompt.textChanged, self.preset.currentTextChanged, self.strength.valueChanged,
                       self.seed.valueChanged):  # fmt: skip
            signal.connect(lambda *_a: self.session.changed())
        controller.listeners.append(self.refresh)
        self.refresh()

    def _toggled(self, on: bool) -> None:
        try:
            if on and not self.session.on:
                self.session.start()
            elif not on and self.session.on:
                self.session.stop()
        except Exception as exc:  # never leave the toggle saying something live is not doing
            traceback.print_exc()
            self.controller.say(f"Live failed: {type(exc).__name__}: {exc}")
        self.refresh()

    def _new_seed(self) -> None:
        self.seed.setValue(self.session.new_seed())

    def _apply(self) -> None:
        try:
            node = self.session.apply()
            self.controller.say(f"Applied the live picture as layer “{node.name()}”")
        except actions.ActionError as exc:
            self.controller.say(f"Live: {exc}")

    def refresh(self) -> None:
        s = self.session
        if self.toggle.isChecked() != s.on:  # live stopped by itself (document closed)
            self.toggle.blockSignals(True)
            self.toggle.setChecked(s.on)
            self.toggle.blockSignals(False)
        self.toggle.setText("Live: on" if s.on else "Live: off")
        font = self.toggle.font()
        font.setBold(s.on)  # on at a glance, in any theme
        self.toggle.setFont(font)
        n = s.counts
        self.state.setText(f"{s.state}\nFrames: {n['sent']} sent, {n['shown']} shown, {n['superseded']} replaced")
        self.apply.setEnabled(s.shown is not None)


def _strength(v: float) -> str:
    return f"{round(v * 100)} %"


def _mirror(a: Any, b: Any) -> None:
    """Two text boxes for one setting show the same text (editing either one)."""

    def copy(src: Any, dst: Any) -> None:
        if dst.toPlainText() != src.toPlainText():
            dst.setPlainText(src.toPlainText())

    a.textChanged.connect(lambda: copy(a, b))
    b.textChanged.connect(lambda: copy(b, a))
