"""The GIMP 3 side: procedure registration, dialogs, pixels in and out through GEGL buffers.

Decisions (what to send, where results go) are made by `logic.py` and the shared client; this
module only talks to GIMP.
Every libgimp call happens on the plug-in's main thread.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

from . import cancel_guard, logic, procs, remote  # noqa: E402
from ._common import ActionError, actions, results, settings  # noqa: E402
from .procs import ProcSpec  # noqa: E402

RGBA = "R'G'B'A u8"  # non-linear 8-bit RGBA: what the wire's rgba8 means
GRAY = "Y u8"
MENU = "<Image>/Filters/sdbridge"


# --- pixels ------------------------------------------------------------------------------------


def read_canvas(image: Gimp.Image) -> logic.Canvas:
    """The visible canvas (what the user sees) and the selection mask, straight from GEGL buffers."""
    w, h = image.get_width(), image.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    visible = Gimp.Layer.new_from_visible(image, image, "sdbridge source")
    try:
        rgba = bytes(visible.get_buffer().get(rect, 1.0, RGBA, Gegl.AbyssPolicy.NONE))
    finally:
        visible.delete()  # never inserted: just drop it
    _ok, non_empty, *_bounds = Gimp.Selection.bounds(image)  # Canvas derives the bounds from the mask
    if not non_empty:
        return logic.Canvas(w, h, rgba)
    mask = bytes(image.get_selection().get_buffer().get(rect, 1.0, GRAY, Gegl.AbyssPolicy.NONE))
    return logic.Canvas(w, h, rgba, mask)


def add_layer(
    image: Gimp.Image, name: str, rgba: bytes, place: logic.Placement, parasite: bytes, mask_selection: bool
) -> Gimp.Layer:
    layer = Gimp.Layer.new(
        image, name, place.src_w, place.src_h, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL
    )
    image.insert_layer(layer, None, -1)  # -1: above the active layer
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, place.src_w, place.src_h), RGBA, rgba)
    buf.flush()
    if place.needs_scale:
        layer.scale(place.w, place.h, False)
    layer.set_offsets(place.x, place.y)
    if mask_selection:
        # Non-destructive: the result is hidden outside the selection but stays editable.
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
    layer.attach_parasite(Gimp.Parasite.new(logic.PARASITE_NAME, Gimp.PARASITE_PERSISTENT, list(parasite)))
    layer.update(0, 0, place.w, place.h)
    return layer


def apply_change(image: Gimp.Image, change: results.CanvasChange, old_w: int, old_h: int) -> None:
    if change.scale:
        image.scale(change.w, change.h)
        return
    dx, dy = change.origin
    image.resize(change.w, change.h, dx, dy)
    # Like Canvas Size's "image-sized layers": layers that filled the old canvas fill the new one.
    for layer in image.get_layers():
        _ok, x, y = layer.get_offsets()
        if (layer.get_width(), layer.get_height(), x, y) == (old_w, old_h, dx, dy):
            layer.resize_to_image_size()


# --- one job ---------------------------------------------------------------------------------


def report_progress(event: dict[str, Any], label: str) -> None:
    kind = event.get("type")
    if kind == "queued":
        pos = int(event.get("position") or 0)
        Gimp.progress_set_text(f"{label}: queued" + (f" ({pos} ahead)" if pos else ""))
    elif kind == "started":
        Gimp.progress_set_text(f"{label}: running")
    elif kind == "reconnecting":
        Gimp.progress_set_text(f"{label}: connection lost, reconnecting…")
    elif kind == "progress":
        total = max(1, int(event.get("total") or 1))
        Gimp.progress_update(min(1.0, int(event.get("step") or 0) / total))


def execute(spec: ProcSpec, values: dict[str, Any], image: Gimp.Image) -> list[Gimp.Layer]:
    label = spec.title
    canvas = read_canvas(image)
    logic.plan_job(spec, values, canvas)  # local mistakes (no selection, empty prompt) before any network
    Gimp.progress_init(f"sdbridge: {label}")
    url = str(values.get("server-url") or settings.DEFAULT_URL)
    with remote.Remote(url, str(values.get("token") or "")) as server:
        welcome = server.connect()
        actions.require_kind(spec.kind, welcome)
        logic.check_model(values, welcome)
        plan = logic.plan_job(spec, values, canvas, actions.max_pixels(welcome))
        job_id = server.submit(plan.request)
        # GIMP's Cancel kills this process outright; the guard then cancels the job on the server.
        guard = cancel_guard.spawn(server.url, str(values.get("token") or ""), job_id)
        try:
            result = server.wait_result(
                job_id, float(values.get("timeout") or 600), lambda ev: report_progress(ev, label)
            )
        except BaseException:
            server.cancel(job_id)  # don't leave it running (a no-op when the job already ended)
            raise
        finally:
            guard.release()
    Gimp.progress_update(1.0)
    return apply_result(image, spec, plan, result, canvas)


def apply_result(
    image: Gimp.Image, spec: ProcSpec, plan: logic.Plan, result: dict[str, Any], canvas: logic.Canvas
) -> list[Gimp.Layer]:
    used = dict(result.get("params") or {})
    images = result.get("images") or []
    if not images:
        why = "; ".join(str(m) for m in used.get("messages") or []) or "nothing changed"
        raise ActionError(f"{spec.title}: the server returned no result ({why}).")
    decoded = [results.decode_image(img) for img in images]  # fail before touching the image
    layers: list[Gimp.Layer] = []
    image.undo_group_start()  # one undo step per job, canvas change included
    try:
        change = results.canvas_change(plan.request, result, canvas.w, canvas.h)
        if change is not None:
            apply_change(image, change, canvas.w, canvas.h)
        if spec.kind != "generate" and len(images) > 1:
            # Editing jobs may answer in pieces (strips, faces): still one result layer per job.
            pieces = [
                (int(i.get("x") or 0), int(i.get("y") or 0), w, h, px)
                for i, (w, h, px) in zip(images, decoded, strict=True)
            ]
            x, y, w, h, rgba = results.merge_pieces(pieces)
            images, decoded = [{**images[0], "x": x, "y": y, "name": ""}], [(w, h, rgba)]
        for img, (w, h, rgba) in zip(images, decoded, strict=True):
            seed = img.get("seed", used.get("seed"))
            prompt, part = str(used.get("prompt") or ""), str(img.get("name") or "")
            name = results.layer_name(prompt, spec.kind, seed, part, limit=logic.LAYER_NAME_MAX)
            parasite = logic.params_parasite(spec.kind, {**used, "seed": seed})
            place = logic.placement(plan, img, w, h)
            layers.append(add_layer(image, name, rgba, place, parasite, plan.mask_result))
    finally:
        image.undo_group_end()
    Gimp.displays_flush()
    return layers


# --- procedures --------------------------------------------------------------------------------


def _values(spec: ProcSpec, config: Gimp.ProcedureConfig) -> dict[str, Any]:
    return {a.name: config.get_property(a.name) for a in spec.args}


def _show_dialog(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig, spec: ProcSpec) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi, Gtk

    GimpUi.init("sdbridge")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, f"sdbridge – {spec.label.replace('_', '')}")
    for name in ("prompt", "negative"):
        if any(a.name == name for a in spec.args):
            dialog.get_widget(name, Gtk.TextView.__gtype__)  # multi-line prompt boxes
    dialog.fill(None)
    _dialog_test_hook(dialog, config)
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def _dialog_test_hook(dialog: Any, config: Gimp.ProcedureConfig) -> None:
    """Test hook: with env SDBRIDGE_GIMP_DIALOG_TEST naming a JSON file {"set": {...}, "response": "ok"},
    act like a user (type the values, press OK/Cancel) once the dialog is up. Real-host tests use it to
    check the dialog itself and that it remembers the last values; without the variable it does nothing."""
    path = os.environ.get("SDBRIDGE_GIMP_DIALOG_TEST")
    if not path or not os.path.isfile(path):
        return
    from gi.repository import Gtk

    with open(path, encoding="utf-8") as fh:
        script = json.load(fh)

    def act() -> bool:
        seen = {a: config.get_property(a) for a in script.get("report", [])}
        with open(path + ".seen", "w", encoding="utf-8") as fh:
            json.dump(seen, fh)  # what the dialog showed before "typing"
        for name, value in (script.get("set") or {}).items():
            config.set_property(name, value)
        ok = script.get("response", "ok") == "ok"
        dialog.response(Gtk.ResponseType.OK if ok else Gtk.ResponseType.CANCEL)
        return False

    GLib.timeout_add(300, act)


def _fail(procedure: Gimp.Procedure, run_mode: Gimp.RunMode, message: str) -> Gimp.ValueArray:
    if run_mode != Gimp.RunMode.INTERACTIVE:
        # Interactive failures are shown by GIMP from the returned error; scripts get it in the log too.
        Gimp.message(message)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def run(
    procedure: Gimp.Procedure,
    run_mode: Gimp.RunMode,
    image: Gimp.Image,
    drawables: list[Any],
    config: Gimp.ProcedureConfig,
    _data: Any,
) -> Gimp.ValueArray:
    spec = procs.PROCS_BY_NAME[procedure.get_name()]
    if run_mode == Gimp.RunMode.INTERACTIVE and not _show_dialog(procedure, config, spec):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    try:
        layers = execute(spec, _values(spec, config), image)
    except ActionError as exc:
        return _fail(procedure, run_mode, str(exc))
    except Exception as exc:  # a bug: still say what happened instead of dying silently
        traceback.print_exc()
        return _fail(procedure, run_mode, f"sdbridge plug-in error: {type(exc).__name__}: {exc}")
    finally:
        Gimp.progress_end()
    rv = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    rv.remove(1)
    rv.insert(1, GObject.Value(Gimp.Layer, layers[0]))
    return rv


def _add_arg(proc: Gimp.Procedure, a: procs.Arg) -> None:
    flags = GObject.ParamFlags.READWRITE
    if a.type == "str":
        proc.add_string_argument(a.name, a.nick, a.blurb, a.default, flags)
    elif a.type == "int":
        proc.add_int_argument(a.name, a.nick, a.blurb, int(a.lo), int(a.hi), a.default, flags)
    elif a.type == "float":
        proc.add_double_argument(a.name, a.nick, a.blurb, a.lo, a.hi, a.default, flags)
    elif a.type == "bool":
        proc.add_boolean_argument(a.name, a.nick, a.blurb, a.default, flags)
    else:
        raise ValueError(f"unknown argument type {a.type}")


class SdBridge(Gimp.PlugIn):
    def do_set_i18n(self, _name: str) -> bool:
        return False  # no translations shipped: avoids "catalog directory does not exist" noise

    def do_query_procedures(self) -> list[str]:
        return [p.name for p in procs.PROCS]

    def do_create_procedure(self, name: str) -> Gimp.Procedure:
        spec = procs.PROCS_BY_NAME[name]
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        proc.set_image_types("RGB*")
        proc.set_sensitivity_mask(
            Gimp.ProcedureSensitivityMask.DRAWABLE
            | Gimp.ProcedureSensitivityMask.DRAWABLES
            | Gimp.ProcedureSensitivityMask.NO_DRAWABLES
        )
        proc.set_menu_label(spec.label)
        proc.add_menu_path(MENU)
        proc.set_documentation(spec.blurb, spec.blurb + " (sdbridge Stable Diffusion server)", name)
        proc.set_attribution("sdbridge", "sdbridge", "2025")
        for a in spec.args:
            _add_arg(proc, a)
        proc.add_layer_return_value(
            "layer", "Layer", "The (first) new result layer", True, GObject.ParamFlags.READWRITE
        )
        return proc


def main(argv: list[str]) -> None:
    Gimp.main(SdBridge.__gtype__, argv if argv else sys.argv)
