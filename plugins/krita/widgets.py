"""Docker widgets bound to the settings store: every widget writes its key on change, and
`Form.load` puts a whole `Settings` back into them (after "Reuse prompt and seed").

Pickers (`combo`) list what the server's welcome offers; before the first connection they show the
saved choice, so nothing is blank, and `""` always means "the server's / the model's default".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import Option
from .controller import Settings, write_setting
from .qt import Qt, QtWidgets

W = QtWidgets
Loader = Callable[[Settings], None]


class Form:
    def __init__(self) -> None:
        self._loaders: list[Loader] = []

    def load(self, s: Settings) -> None:
        for fn in self._loaders:
            fn(s)

    def _bind(self, widget: Any, load: Loader) -> Any:
        def guarded(s: Settings) -> None:
            widget.blockSignals(True)  # loading must not write every key back
            try:
                load(s)
            finally:
                widget.blockSignals(False)

        self._loaders.append(guarded)
        return widget

    def line(self, key: str, password: bool = False) -> Any:
        w = W.QLineEdit()
        if password:
            w.setEchoMode(W.QLineEdit.EchoMode.Password)
        w.editingFinished.connect(lambda: write_setting(key, w.text().strip()))
        return self._bind(w, lambda s: w.setText(getattr(s, key)))

    def text(self, key: str, hint: str, lines: int = 3) -> Any:
        w = W.QPlainTextEdit()
        w.setPlaceholderText(hint)
        w.setTabChangesFocus(True)
        height = w.fontMetrics().lineSpacing() * lines + 12
        w.setMinimumHeight(height)
        w.setMaximumHeight(height)
        w.textChanged.connect(lambda: write_setting(key, w.toPlainText()))
        return self._bind(w, lambda s: w.setPlainText(getattr(s, key)) if w.toPlainText() != getattr(s, key) else None)

    def spin(self, key: str, lo: int, hi: int, special: str = "") -> Any:
        w = W.QSpinBox()
        w.setRange(lo, hi)
        if special:
            w.setSpecialValueText(special)  # shown at the minimum, e.g. "random" for seed -1
        w.valueChanged.connect(lambda v: write_setting(key, v))
        return self._bind(w, lambda s: w.setValue(int(getattr(s, key))))

    def dspin(self, key: str, lo: float, hi: float, step: float, suffix: str = "") -> Any:
        w = W.QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setSuffix(suffix)
        w.valueChanged.connect(lambda v: write_setting(key, v))
        return self._bind(w, lambda s: w.setValue(float(getattr(s, key))))

    def check(self, key: str, label: str) -> Any:
        w = W.QCheckBox(label)
        w.toggled.connect(lambda v: write_setting(key, v))
        return self._bind(w, lambda s: w.setChecked(bool(getattr(s, key))))

    def choice(self, key: str, options: list[str]) -> Any:
        w = W.QComboBox()
        w.addItems(options)
        w.currentTextChanged.connect(lambda t: write_setting(key, t))
        return self._bind(w, lambda s: w.setCurrentText(getattr(s, key)))

    def combo(self, key: str, default_label: str) -> Picker:
        picker = Picker(key, default_label)
        return self._bind(picker, lambda s: picker.select(getattr(s, key)))

    def slider(self, key: str, lo: int, hi: int, label: Callable[[float], str]) -> tuple[Any, Any]:
        """A percent slider for a 0..1 setting, with a label saying what the value means."""
        w = W.QSlider(Qt.Orientation.Horizontal)
        w.setRange(lo, hi)
        w.setPageStep(10)
        text = W.QLabel()
        text.setMinimumWidth(max(text.fontMetrics().horizontalAdvance(label(v / 100)) for v in (lo, hi - 1, hi)) + 4)

        def moved(v: int) -> None:
            text.setText(label(v / 100))
            write_setting(key, round(v / 100, 2))

        w.valueChanged.connect(moved)

        def load(s: Settings) -> None:
            w.setValue(round(float(getattr(s, key)) * 100))
            text.setText(label(w.value() / 100))

        self._bind(w, load)
        return w, text


class Picker(W.QComboBox):  # type: ignore[misc,name-defined]
    """A name from the server's list; item data is the setting value, `""` the default. Without a
    `key` it is a plain picker (the LoRA to insert) that stores nothing."""

    def __init__(self, key: str | None, default_label: str) -> None:
        super().__init__()
        self.key = key
        self.default_label = default_label  # until the server's options say better
        self._offered: list[Option] | None = None
        self.setSizeAdjustPolicy(W.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(8)
        self.addItem(default_label, "")
        if key is not None:
            self.currentIndexChanged.connect(lambda _i: write_setting(key, self.value()))

    def value(self) -> str:
        data = self.currentData()
        return data if isinstance(data, str) else ""

    def select(self, value: str) -> None:
        i = self.findData(value)
        if i < 0:  # not offered (yet): keep the saved choice visible instead of a blank box
            self.addItem(f"{value} (not on the server)" if self.count() > 1 else value, value)
            i = self.count() - 1
        self.setCurrentIndex(i)

    def offer(self, options: list[Option]) -> None:
        """The server's options (`plugins/common/choices.py`; one with id `""` labels the default);
        the current choice stays selected, or stays listed when the server lacks it."""
        if options == self._offered:
            return
        self._offered = list(options)
        if not options or options[0].id != "":
            options = [Option("", self.default_label), *options]
        current = self.value()
        self.blockSignals(True)
        try:
            self.clear()
            for o in options:
                self.addItem(o.label, o.id)
            self.select(current)
        finally:
            self.blockSignals(False)


def row(*items: Any, stretch_last: bool = False) -> Any:
    """Widgets side by side; a string becomes a label between them."""
    box = W.QHBoxLayout()
    box.setContentsMargins(0, 0, 0, 0)
    for item in items:
        box.addWidget(W.QLabel(item) if isinstance(item, str) else item)
    if stretch_last:
        box.addStretch(1)
    return box


def scroll_page(content: Any, min_lines: int = 3, full_rows: bool = True) -> Any:
    """`content` in a frameless vertical scroll area. It never scrolls sideways: it is at least as
    wide as the content needs (the docker column widens instead of clipping a control), and it may
    shrink to `min_lines` text lines high (the content scrolls) so the docker fits any height.
    `full_rows`: the content keeps its preferred height (form rows); else it may shrink to its minimum."""
    area = W.QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(W.QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    if full_rows:  # squeezed to their minimum, form rows would crop spin boxes and combos
        content.setMinimumHeight(content.sizeHint().height())
    area.setMinimumWidth(content.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    area.setMinimumHeight(area.fontMetrics().lineSpacing() * min_lines)
    return area
