"""The sdbridge dialog's widgets (GimpUi / GTK 3): one labelled field per procedure argument, the
server's choices as drop-downs, a live preview with the step count, and a status line.

This module only builds and reads widgets; `interactive.py` connects them to the server and the
image. Every input is named `sdbridge-<argument>` and has a mnemonic label pointing at it (what a
screen reader reads as its name), so the dialog can be inspected from inside GIMP.
"""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GdkPixbuf, GimpUi, GLib, Gtk  # noqa: E402

from ._common import choices  # noqa: E402
from .procs import SERVER_ARGS, Arg, ProcSpec  # noqa: E402

PREVIEW_SIDE = 256
SEED_MAX = 2**32 - 1  # the server's; the PDB argument (a gint) stops at 2**31 - 1
TEXT = {"prompt": 4, "negative": 2}  # multi-line fields and their visible lines
SLIDERS = ("strength", "fidelity", "blend")
SERVER = tuple(a.name for a in SERVER_ARGS)
# Dialog order (the procedures' argument order is the PDB's and stays as it is).
ORDER = ("prompt", "negative", "model", "sampler", "steps", "cfg", "seed", "strength", "batch",
         "left", "top", "right", "bottom", "scale", "upscaler", "restorer", "fidelity", "blend", *SERVER)  # fmt: skip


def widget_name(arg: str) -> str:
    return f"sdbridge-{arg}"


def _label(text: str, target: Gtk.Widget) -> Gtk.Label:
    label = Gtk.Label.new_with_mnemonic(text)
    label.set_mnemonic_widget(target)
    label.set_xalign(0.0)
    return label


class Form:
    """The dialog for one procedure, filled with `values` (procedure arguments by name)."""

    def __init__(self, spec: ProcSpec, values: dict[str, Any], last_seed: int) -> None:
        GimpUi.init("sdbridge")
        self.spec = spec
        self.dialog = GimpUi.Dialog(title=f"sdbridge – {spec.title}", role=f"sdbridge-{spec.kind}")
        self.dialog.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.ok = self.dialog.add_button("_OK", Gtk.ResponseType.OK)
        self.dialog.set_default_response(Gtk.ResponseType.OK)
        self.fields: dict[str, Gtk.Widget] = {}
        self.random: Gtk.CheckButton | None = None
        args = sorted(spec.args, key=lambda a: ORDER.index(a.name))
        labels = Gtk.SizeGroup(mode=Gtk.SizeGroupMode.HORIZONTAL)  # one label column across both grids
        main, server = Gtk.Grid(row_spacing=6, column_spacing=12), Gtk.Grid(row_spacing=6, column_spacing=12)
        for row, arg in enumerate(args):
            grid = server if arg.name in SERVER else main
            widget, holder = self._field(arg, last_seed)
            widget.set_name(widget_name(arg.name))
            widget.set_tooltip_text(arg.blurb)
            self.fields[arg.name] = widget
            label = _label(f"_{arg.nick}", widget)
            labels.add_widget(label)
            if arg.name in TEXT:
                label.set_valign(Gtk.Align.START)
            grid.attach(label, 0, row, 1, 1)
            grid.attach(holder, 1, row, 1, 1)
        self.connect_button = Gtk.Button.new_with_mnemonic("Co_nnect")
        self.connect_button.set_name("sdbridge-connect")
        server.attach_next_to(self.connect_button, self.fields["server-url"], Gtk.PositionType.RIGHT, 1, 1)
        self.server_box = Gtk.Expander.new_with_mnemonic("_Server")
        self.server_box.add(server)
        self.status = Gtk.Label(xalign=0.0, wrap=True, selectable=True, max_width_chars=70)
        self.status.set_name("sdbridge-status")
        left = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
        for part in (main, self.server_box, self.status):
            left.pack_start(part, False, False, 0)
        outer = Gtk.Box(spacing=18, border_width=12)
        outer.pack_start(left, True, True, 0)
        outer.pack_start(self._preview_box(), False, False, 0)
        self.dialog.get_content_area().add(outer)
        for name, value in values.items():
            self.set_value(name, value)

    # --- building ---------------------------------------------------------------------------

    def _field(self, arg: Arg, last_seed: int) -> tuple[Gtk.Widget, Gtk.Widget]:
        """(the input widget, what goes into the grid: the widget or a box around it)."""
        if arg.name in TEXT:
            view = Gtk.TextView(wrap_mode=Gtk.WrapMode.WORD_CHAR, accepts_tab=False, hexpand=True)
            scroll = Gtk.ScrolledWindow(min_content_height=22 * TEXT[arg.name], min_content_width=360)
            scroll.set_shadow_type(Gtk.ShadowType.IN)
            scroll.add(view)
            return view, scroll
        if arg.name in choices.FIELDS:
            combo = Gtk.ComboBoxText(hexpand=True)
            return combo, combo
        if arg.name in SLIDERS:
            scale = Gtk.Scale.new_with_range(Gtk.Orientation.HORIZONTAL, arg.lo, arg.hi, 0.01)
            scale.set_digits(2)
            scale.set_value_pos(Gtk.PositionType.RIGHT)
            scale.set_hexpand(True)
            return scale, scale
        if arg.type == "str":
            entry = Gtk.Entry(hexpand=True, activates_default=arg.name != "server-url")
            if arg.name == "token":
                entry.set_visibility(False)
                entry.set_input_purpose(Gtk.InputPurpose.PASSWORD)
            return entry, entry
        spin = Gtk.SpinButton.new_with_range(arg.lo, arg.hi, 1 if arg.type == "int" else 0.1)
        spin.set_digits(0 if arg.type == "int" else 1)
        spin.set_activates_default(True)
        if arg.name != "seed":
            return spin, spin
        spin.set_range(0, SEED_MAX)
        spin.set_value(max(0, last_seed))
        self.random = Gtk.CheckButton.new_with_mnemonic("_Random")
        self.random.set_name("sdbridge-random-seed")
        self.random.set_tooltip_text("A new seed for every run (the seed used is in the layer name)")
        self.random.connect("toggled", lambda b: spin.set_sensitive(not b.get_active()))
        box = Gtk.Box(spacing=12)
        box.pack_start(spin, False, False, 0)
        box.pack_start(self.random, False, False, 0)
        return spin, box

    def _preview_box(self) -> Gtk.Widget:
        self.preview = Gtk.Image()
        self.preview.set_name("sdbridge-preview")
        self.preview.set_size_request(PREVIEW_SIDE, PREVIEW_SIDE)
        self.step = Gtk.Label(label="The preview follows the job here.", xalign=0.5)
        self.step.set_name("sdbridge-step")
        self.bar = Gtk.ProgressBar()
        self.bar.set_name("sdbridge-progress")
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6, border_width=6)
        for part in (self.preview, self.step, self.bar):
            box.pack_start(part, False, False, 0)
        frame = Gtk.Frame(label="Preview")
        frame.add(box)
        return frame

    # --- values -------------------------------------------------------------------------------

    def value(self, name: str) -> Any:
        w = self.fields[name]
        if isinstance(w, Gtk.TextView):
            buf = w.get_buffer()
            return buf.get_text(buf.get_start_iter(), buf.get_end_iter(), False)
        if isinstance(w, Gtk.ComboBoxText):
            return w.get_active_id() or ""
        if isinstance(w, Gtk.Entry) and not isinstance(w, Gtk.SpinButton):
            return w.get_text().strip()
        if name == "seed" and self.random is not None and self.random.get_active():
            return -1
        if isinstance(w, Gtk.SpinButton) and w.get_digits() == 0:
            return round(w.get_value())  # not get_value_as_int(): a gint, and seeds go up to 2**32 - 1
        return round(float(w.get_value()), 2)

    def values(self) -> dict[str, Any]:
        return {name: self.value(name) for name in self.fields}

    def set_value(self, name: str, value: Any) -> None:
        w = self.fields.get(name)
        if w is None:
            return
        if isinstance(w, Gtk.TextView):
            w.get_buffer().set_text(str(value))
        elif isinstance(w, Gtk.ComboBoxText):
            if not w.set_active_id(str(value)):  # not offered (yet): keep the saved choice visible
                w.append(str(value), str(value) or "Server default")
                w.set_active_id(str(value))
        elif isinstance(w, Gtk.Entry) and not isinstance(w, Gtk.SpinButton):
            w.set_text(str(value))
        elif name == "seed" and self.random is not None:
            self.random.set_active(int(value) < 0)
            if int(value) >= 0:
                w.set_value(int(value))
        else:
            w.set_value(float(value))

    def set_options(self, welcome: dict[str, Any]) -> None:
        """Fill the drop-downs from the server's welcome; keep a choice the server still offers."""
        for name, options_of in choices.FIELDS.items():
            combo = self.fields.get(name)
            if not isinstance(combo, Gtk.ComboBoxText):
                continue
            current, options = combo.get_active_id() or "", options_of(welcome)
            combo.remove_all()
            for o in options:
                combo.append(o.id, o.label)
            combo.set_active_id(choices.pick(current, options))
        limits = welcome.get("limits") or {}
        for name, key in (("steps", "max_steps"), ("batch", "max_batch")):
            spin = self.fields.get(name)
            if isinstance(spin, Gtk.SpinButton) and isinstance(limits.get(key), int):
                spin.set_range(1, limits[key])

    # --- state --------------------------------------------------------------------------------

    def set_status(self, text: str, error: bool = False) -> None:
        self.status.set_markup(
            f'<span foreground="#c01c28">{GLib.markup_escape_text(text)}</span>'
            if error
            else GLib.markup_escape_text(text)
        )
        if error and "server" in text.lower():
            self.server_box.set_expanded(True)

    def set_running(self, running: bool, can_start: bool) -> None:
        """While a job runs only Cancel works; otherwise OK needs a connected server."""
        for name, w in self.fields.items():
            w.set_sensitive(not running and not (name == "seed" and self.random and self.random.get_active()))
        if self.random is not None:
            self.random.set_sensitive(not running)
        self.connect_button.set_sensitive(not running)
        self.ok.set_sensitive(not running and can_start)
        if not running:
            self.bar.set_fraction(0.0)

    def show_progress(self, text: str, fraction: float | None) -> None:
        self.step.set_text(text)
        if fraction is None:
            self.bar.pulse()
        else:
            self.bar.set_fraction(min(1.0, max(0.0, fraction)))

    def show_preview(self, pixbuf: GdkPixbuf.Pixbuf) -> None:
        w, h = pixbuf.get_width(), pixbuf.get_height()
        k = PREVIEW_SIDE / max(w, h)  # latent previews are small: scale them up to the box
        self.preview.set_from_pixbuf(
            pixbuf.scale_simple(max(1, round(w * k)), max(1, round(h * k)), GdkPixbuf.InterpType.BILINEAR)
        )


def decode_preview(preview: dict[str, Any]) -> GdkPixbuf.Pixbuf | None:
    """A step preview as a pixbuf (None when it cannot be decoded: the step count still updates)."""
    fmt, data = preview.get("format"), preview.get("data")
    if not isinstance(data, bytes):
        return None
    try:
        if fmt == "rgba8":
            w, h = int(preview["w"]), int(preview["h"])
            return GdkPixbuf.Pixbuf.new_from_bytes(GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, True, 8, w, h, w * 4)
        loader = GdkPixbuf.PixbufLoader.new_with_type(str(fmt))
        loader.write(data)
        loader.close()
        return loader.get_pixbuf()
    except (GLib.Error, KeyError, ValueError):
        return None


def decodable_formats() -> tuple[str, ...]:
    """What to list in `hello.preview_formats`: encoded formats this GdkPixbuf reads, then raw RGBA."""
    names = {f.get_name() for f in GdkPixbuf.Pixbuf.get_formats()}
    return (*(f for f in ("webp", "jpeg", "png") if f in names), "rgba8")
