"""The GIMP plug-in's one settings store (without GIMP): file round trip, damage tolerance, privacy, and
the mapping between procedure arguments and the shared settings keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from plugins.common.settings import Settings
from plugins.gimp.sdbridge_gimp import logic, prefs, procs, remote
from plugins.gimp.sdbridge_gimp.remote import Event

SPEC = procs.PROCS_BY_NAME


@pytest.mark.parametrize("spec", procs.PROCS, ids=lambda p: p.name)
def test_defaults_are_the_procedures_defaults(spec: procs.ProcSpec) -> None:
    """A first dialog (no settings file yet) shows what a PDB call without arguments would use."""
    assert prefs.to_values(spec, Settings()) == {a.name: a.default for a in spec.args}


@pytest.mark.parametrize("spec", procs.PROCS, ids=lambda p: p.name)
def test_every_argument_has_a_settings_key(spec: procs.ProcSpec) -> None:
    keys = [prefs.settings_key(spec, a.name) for a in spec.args]
    assert len(keys) == len(set(keys)), keys  # no two arguments of one procedure share a key


def test_generate_and_inpaint_share_everything_but_upscale_keeps_its_strength() -> None:
    gen, inp, up = SPEC["sdbridge-generate"], SPEC["sdbridge-inpaint"], SPEC["sdbridge-upscale"]
    chosen = {"prompt": "a fox", "negative": "blur", "model": "m", "sampler": "DDIM", "seed": 42, "steps": 9,
              "cfg": 5.0, "strength": 0.6, "batch": 3, "server-url": "ws://h:1/", "token": "t",
              "timeout": 60}  # fmt: skip
    s = prefs.from_values(gen, chosen, Settings())
    assert prefs.to_values(inp, s) == chosen
    upscale = prefs.to_values(up, s)
    assert upscale["strength"] == Settings().upscale_strength and upscale["prompt"] == "a fox"
    assert upscale["server-url"] == "ws://h:1/" and upscale["model"] == "m"


def test_random_seed_keeps_the_last_seed() -> None:
    spec = SPEC["sdbridge-generate"]
    s = prefs.from_values(spec, {"seed": 42}, Settings())
    assert (s.seed, s.fixed_seed) == (42, True)
    s = prefs.from_values(spec, {"seed": -1}, s)
    assert (s.seed, s.fixed_seed) == (42, False)  # the dialog still shows 42 next to "Random"
    assert prefs.to_values(spec, s)["seed"] == -1


def test_outpaint_sides_and_restore_values_round_trip() -> None:
    out, rest = SPEC["sdbridge-outpaint"], SPEC["sdbridge-restore"]
    s = prefs.from_values(out, {"left": 32, "right": 0, "top": 8, "bottom": 0, "strength": 0.7}, Settings())
    assert {k: prefs.to_values(out, s)[k] for k in ("left", "right", "top", "bottom", "strength")} == {
        "left": 32, "right": 0, "top": 8, "bottom": 0, "strength": 0.7,
    }  # fmt: skip
    s = prefs.from_values(rest, {"restorer": "GFPGANv1.4", "fidelity": 0.2, "blend": 0.5}, s)
    assert (s.restorer, s.restore_fidelity, s.restore_blend) == ("GFPGANv1.4", 0.2, 0.5)
    assert s.strength == Settings().strength  # restore has no strength: the shared one is untouched


def test_file_round_trip_is_private_and_keeps_unknown_keys(tmp_path: Path) -> None:
    path = prefs.path_in(str(tmp_path / "profile"))
    assert prefs.load(path) == Settings()  # no file yet: the defaults
    s = Settings(url="ws://example:1/", token="secret", prompt="ünïcode\nsecond line", seed=7, fixed_seed=True)
    prefs.save(path, s)
    assert prefs.load(path) == s
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds the token
    data = json.loads(Path(path).read_text())
    data["from_a_newer_plugin"] = [1, 2]
    Path(path).write_text(json.dumps(data))
    prefs.save(path, s.replace(steps=33))
    again = json.loads(Path(path).read_text())
    assert again["from_a_newer_plugin"] == [1, 2] and again["steps"] == 33
    assert [p.name for p in Path(path).parent.iterdir()] == [prefs.FILE_NAME]  # no temp files left


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"steps": "many", "cfg": null, "seed": "7"}'])
def test_damaged_file_falls_back_to_defaults(tmp_path: Path, content: str) -> None:
    path = tmp_path / prefs.FILE_NAME
    path.write_text(content)
    s = prefs.load(str(path))
    assert s.steps == Settings().steps and s.cfg == Settings().cfg
    assert s.seed == (7 if "seed" in content else -1)


def test_batch_reaches_every_diffusion_request() -> None:
    canvas = logic.Canvas(16, 16, bytes(16 * 16 * 4), b"\xff" * 256)
    for spec in procs.PROCS:
        has_batch = any(a.name == "batch" for a in spec.args)
        assert has_batch == (spec.kind in ("generate", "inpaint", "outpaint", "face")), spec.name
        if not has_batch:
            continue
        base = {**prefs.to_values(spec, Settings()), "prompt": "x"}
        assert "batch" not in logic.plan_job(spec, base, canvas).request.params()  # 1 = the server's default
        assert logic.plan_job(spec, {**base, "batch": 3}, canvas).request.params()["batch"] == 3


def test_follow_turns_client_events_into_what_the_user_sees() -> None:
    r = remote.Remote("ws://127.0.0.1:9/")  # never started: follow() is a pure translation
    assert r.follow(Event("progress", "other", {"type": "progress"}), "mine") is None
    step = {"type": "progress", "step": 2}
    assert r.follow(Event("progress", "mine", step), "mine") == step
    assert r.follow(Event("disconnected", None, {"reason": "x", "fatal": False}), "mine") == {"type": "reconnecting"}
    shown = r.follow(Event("server_restarted", None, {"resubmitted": 2}), "mine")
    assert shown is not None and remote.restarted_message(shown) == "The sdbridge server restarted; 2 jobs sent again."
    with pytest.raises(remote.ActionError, match="refused the connection: auth"):
        r.follow(Event("disconnected", None, {"reason": "auth: wrong token", "fatal": True}), "mine")
    cancelled = r.follow(Event("cancelled", "mine", {"type": "cancelled"}), "mine")
    assert cancelled is not None and remote.failure(cancelled) == remote.CANCELLED
    oom = r.follow(Event("error", "mine", {"type": "error", "code": "out_of_memory", "message": "m"}), "mine")
    text = remote.failure(oom or {}) or ""
    assert "out_of_memory" in text and "ran out of memory" in text
    assert remote.failure(step) is None


def test_client_id_is_made_once_per_profile_and_kept(tmp_path: Path) -> None:
    profile = str(tmp_path / "profile")
    first = prefs.client_id(profile)
    assert first.isalnum() and prefs.client_id(profile) == first  # the next call (another process) agrees
    path = Path(profile) / prefs.CLIENT_ID_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("../not an id\n")
    fresh = prefs.client_id(profile)
    assert fresh != first and fresh.isalnum() and path.read_text() == fresh  # a damaged file is replaced
    assert not Path(profile, prefs.FILE_NAME).exists()  # the id does not touch the settings file
