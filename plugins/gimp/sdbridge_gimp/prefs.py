"""The one settings store every sdbridge procedure shares, and how procedure arguments map onto it.

GIMP keeps "last values" per procedure, so Inpaint knew nothing of the server URL, prompt or model
set up in Generate. The plug-in therefore keeps one `Settings` (the keys Krita uses too) in a JSON
file in the GIMP profile folder, `<profile>/sdbridge-settings.json`. A file rather than a global
parasite: a parasite reaches disk only when GIMP exits cleanly (a crash loses it), while the file is
written the moment OK is pressed, atomically (two plug-in processes can run at once), readable and
removable by the user. It holds the token, so it is private to the user (mode 0600).

Interactive runs read it to fill the dialog and write it back on OK (with the seed actually used);
non-interactive calls (scripts, batch mode) neither read nor write it: their arguments are the job.

Every call, interactive or not, says the profile's `client_id` to the server (kept in a file of its
own, `<profile>/sdbridge-client-id`, since it is no choice of the user's): the server lets only a
job's own client fetch or cancel it, and the cancel guard must be that client.
Nothing here imports `gi`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from typing import Any

from ._common import settings
from .procs import ProcSpec

FILE_NAME = "sdbridge-settings.json"
CLIENT_ID_FILE = "sdbridge-client-id"
Settings = settings.Settings
_KEYS = frozenset(Settings.keys())

# Procedure argument -> settings key where the names differ (the rest share their name).
_ARG_KEYS = {
    "server-url": "url",
    "scale": "upscale_scale",
    "fidelity": "restore_fidelity",
    "blend": "restore_blend",
    "left": "outpaint_left",
    "top": "outpaint_top",
    "right": "outpaint_right",
    "bottom": "outpaint_bottom",
}
# Strength per job kind: generate and inpaint share one (as in Krita), the others keep their own.
_STRENGTH_KEYS = {"outpaint": "outpaint_strength", "face": "face_strength", "upscale": "upscale_strength"}


def path_in(profile_dir: str) -> str:
    return os.path.join(profile_dir, FILE_NAME)


def client_id(profile_dir: str) -> str:
    """This profile's id on the server, made by the first call that needs one and kept for good."""
    path = os.path.join(profile_dir, CLIENT_ID_FILE)
    with contextlib.suppress(OSError, UnicodeDecodeError), open(path, encoding="ascii") as fh:
        known = fh.read().strip()
        if known.isalnum() and len(known) <= 64:
            return known
    made = uuid.uuid4().hex
    with contextlib.suppress(OSError):  # a read-only profile: an id for this call only
        _write_atomically(path, made)
    return made


def settings_key(spec: ProcSpec, arg: str) -> str:
    if arg == "strength":
        return _STRENGTH_KEYS.get(spec.kind, "strength")
    key = _ARG_KEYS.get(arg, arg)
    if key not in _KEYS:
        raise KeyError(f"{spec.name}: argument {arg!r} has no settings key")
    return key


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):  # missing or damaged: start from the defaults, never fail the dialog
        return {}
    return data if isinstance(data, dict) else {}


def load(path: str) -> Settings:
    data = _read_file(path)
    return Settings.load(lambda key, default: data.get(key, default))


def save(path: str, s: Settings) -> None:
    """Write atomically; keys this version does not know (a newer plug-in's) are kept."""
    data = {**_read_file(path), **s.as_dict()}
    _write_atomically(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False))


def _write_atomically(path: str, text: str) -> None:
    """Private to the user (the settings hold the token); two plug-in processes may write at once."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sdbridge-settings.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def to_values(spec: ProcSpec, s: Settings) -> dict[str, Any]:
    """The procedure's arguments as the shared settings have them (seed −1 unless the seed is fixed)."""
    values = {a.name: getattr(s, settings_key(spec, a.name)) for a in spec.args}
    if "seed" in values and not s.fixed_seed:
        values["seed"] = -1
    return values


def from_values(spec: ProcSpec, values: dict[str, Any], s: Settings) -> Settings:
    """`s` with the procedure's argument values stored; seed −1 means "random" (the last seed stays)."""
    changes: dict[str, Any] = {}
    for a in spec.args:
        if a.name not in values:
            continue
        key = settings_key(spec, a.name)
        changes[key] = settings.parse(settings.to_string(values[a.name]), getattr(s, key))
    if "seed" in changes:
        fixed = changes["seed"] >= 0
        changes["fixed_seed"] = fixed
        if not fixed:
            del changes["seed"]
    return s.replace(**changes)
