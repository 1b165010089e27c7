"""The GIMP 3 side: procedure registration and what a call does in each run mode.

Interactive calls open the sdbridge dialog (`interactive.py`) with the shared settings (`prefs.py`);
non-interactive calls (scripts, batch mode) and "Repeat" run with the procedure's arguments as they
are, with the progress bar as their only UI. Decisions (what to send, where results go) are made by
`logic.py` and the shared client; every libgimp call happens on the plug-in's main thread.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from . import cancel_guard, image_io, logic, prefs, procs, remote  # noqa: E402
from ._common import ActionError, actions, settings  # noqa: E402
from .procs import ProcSpec  # noqa: E402

MENU = "<Image>/Filters/sdbridge"


def report_progress(event: dict[str, Any], label: str) -> None:
    kind = event.get("type")
    if kind == "queued":
        pos = int(event.get("position") or 0)
        Gimp.progress_set_text(f"{label}: queued" + (f" ({pos} ahead)" if pos else ""))
    elif kind == "started":
        Gimp.progress_set_text(f"{label}: running")
    elif kind == "reconnecting":
        Gimp.progress_set_text(f"{label}: connection lost, reconnecting…")
    elif kind == "server_restarted":
        Gimp.progress_set_text(f"{label}: {remote.restarted_message(event)}")
    elif kind == "progress":
        step, total = int(event.get("step") or 0), max(1, int(event.get("total") or 1))
        Gimp.progress_set_text(f"{label}: step {step} / {total}")
        Gimp.progress_update(min(1.0, step / total))


def execute(spec: ProcSpec, values: dict[str, Any], image: Gimp.Image) -> Gimp.Layer:
    """A call without dialog: connect, run the job with the given arguments, add the result."""
    label = spec.title
    canvas = image_io.read_canvas(image)
    logic.plan_job(spec, values, canvas)  # local mistakes (no selection, empty prompt) before any network
    Gimp.progress_init(f"sdbridge: {label}")
    url = str(values.get("server-url") or settings.DEFAULT_URL)
    me = prefs.client_id(Gimp.directory())
    with remote.Remote(url, str(values.get("token") or ""), client_id=me) as server:
        welcome = server.connect()
        actions.require_kind(spec.kind, welcome)
        logic.check_model(values, welcome)
        plan = logic.plan_job(spec, values, canvas, actions.max_pixels(welcome))
        job_id = server.submit(plan.request)
        # GIMP's Cancel kills this process outright; the guard then cancels the job on the server.
        guard = cancel_guard.spawn(server.url, str(values.get("token") or ""), job_id, server.client.client_id)
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
    return image_io.apply_result(image, spec, plan, result, canvas)


def interact(spec: ProcSpec, image: Gimp.Image, config: Gimp.ProcedureConfig) -> Gimp.Layer | None:
    """The dialog; None when the user cancelled. The values used become GIMP's last values too."""
    if spec.needs_selection and Gimp.Selection.is_empty(image):
        raise ActionError(logic.NEEDS_SELECTION)  # before any dialog: nothing to fill in would help
    from . import dialog_probe  # GTK only for interactive runs
    from .interactive import DialogRun

    run = DialogRun(spec, image, prefs.path_in(Gimp.directory()))
    dialog_probe.attach(run)  # test mode only (an environment variable)
    layer = run.run()
    for a in spec.args:
        value = run.used.get(a.name)
        if value is not None and (a.lo is None or a.lo <= value <= a.hi):  # seeds above gint stay in prefs
            config.set_property(a.name, value)
    return layer


def _values(spec: ProcSpec, config: Gimp.ProcedureConfig) -> dict[str, Any]:
    return {a.name: config.get_property(a.name) for a in spec.args}


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
    try:
        if run_mode == Gimp.RunMode.INTERACTIVE:
            layer = interact(spec, image, config)
            if layer is None:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        else:
            layer = execute(spec, _values(spec, config), image)
    except ActionError as exc:
        return _fail(procedure, run_mode, str(exc))
    except Exception as exc:  # a bug: still say what happened instead of dying silently
        traceback.print_exc()
        return _fail(procedure, run_mode, f"sdbridge plug-in error: {type(exc).__name__}: {exc}")
    finally:
        Gimp.progress_end()
    rv = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    rv.remove(1)
    rv.insert(1, GObject.Value(Gimp.Layer, layer))
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
        # GIMP 3.0 has no "needs a selection" sensitivity: Inpaint checks before its dialog instead.
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
            "layer", "Layer", "The new result layer (the layer group of a batch)", True, GObject.ParamFlags.READWRITE
        )
        return proc


def main(argv: list[str]) -> None:
    Gimp.main(SdBridge.__gtype__, argv if argv else sys.argv)
