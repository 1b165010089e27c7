"""The sdbridge dialog in real GUI GIMP 3 under Xvfb, driven as a user would drive it.

Two GIMP launches on one profile. The first opens Generate with the shared settings pointing at a
dead port (the dialog must say the server is unreachable), fixes the URL, picks model and sampler
from the server's lists, runs a batch of two with a fixed seed (previews and step count while it
runs, screenshots of the dialog), then opens Inpaint (it must show what Generate was set up with),
Inpaint without a selection (refused before any dialog), Restore and Upscale (their drop-downs), and
cancels a long job from the dialog. The second launch (GIMP restarted) opens Generate again: the
settings survived; and a non-interactive call runs with its arguments and leaves the settings alone.

The plug-in's test probe (sdbridge_gimp/dialog_probe.py) walks the dialog's widget tree from inside
the plug-in process and records names, labels, values and choices; see its docstring for why.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gimp_harness as harness
import pytest
from PIL import Image

from plugins.common.jobs import GenerateRequest
from plugins.gimp.sdbridge_gimp.remote import Remote

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

PROMPT = "a lighthouse at dusk, oil painting"
NEGATIVE = "blurry, text"
SEED = 4321
SEL = (16, 16, 48, 40)
DEAD_URL = "ws://127.0.0.1:9/"
LOOK = [{"until": "connected"}, {"dump": "opened"}, {"click": "cancel"}]  # open, record, close
# Every input of a diffusion dialog, its label, and the widget type it must be.
DIFFUSION_FIELDS = {
    "prompt": ("Prompt", "TextView"),
    "negative": ("Negative prompt", "TextView"),
    "model": ("Model", "ComboBoxText"),
    "sampler": ("Sampler", "ComboBoxText"),
    "steps": ("Steps", "SpinButton"),
    "cfg": ("CFG scale", "SpinButton"),
    "seed": ("Seed", "SpinButton"),
    "strength": ("Strength", "Scale"),
    "batch": ("Batch", "SpinButton"),
    "server-url": ("Server URL", "Entry"),
    "token": ("Token", "Entry"),
    "timeout": ("Timeout (s)", "SpinButton"),
}


@dataclass
class Dialogs:
    first: harness.BatchRun
    second: harness.BatchRun
    serve: harness.Serve
    prefs_before_second: dict[str, Any]
    shots: Path

    def res(self, sid: str) -> dict[str, Any]:
        run = self.first if sid in self.first.results else self.second
        res = run.results.get(sid)
        assert res is not None, f"scenario {sid} did not run (rc={run.rc}):\n{run.log[-5000:]}"
        assert "exception" not in res, res["exception"]
        return res

    def dialog(self, sid: str) -> dict[str, Any]:
        rec = self.res(sid).get("dialog")
        assert rec is not None, f"{sid}: the dialog never opened"
        assert not rec["errors"], rec["errors"]
        return rec


def _dialog(sid: str, proc: str, steps: list[dict[str, Any]], sel: Any = None, **extra: Any) -> dict[str, Any]:
    size = extra.pop("size", 96)
    return {"id": sid, "proc": proc, "w": size, "h": size, "selection": sel, "args": {},
            "dialog": {"steps": steps, **extra}}  # fmt: skip


def picked_sampler(welcome: dict) -> str:
    """Not the default one (the choice must come from the list), and one that takes the cancel
    scenario's 150 steps (the few-step LCM/TCD schedules stop at 50)."""
    return [s for s in welcome["samplers"] if s not in ("LCM", "TCD")][-1]


@pytest.fixture(scope="module")
def dialogs(
    gimp_plugin: Path, sdbridge_serve: harness.Serve, xvfb_display: str, tmp_path_factory: pytest.TempPathFactory
) -> Dialogs:
    url, welcome = sdbridge_serve.url, sdbridge_serve.welcome
    sampler = picked_sampler(welcome)
    prefs = harness.prefs_file()
    prefs.parent.mkdir(parents=True, exist_ok=True)
    prefs.write_text(json.dumps({"url": DEAD_URL, "prompt": ""}))  # a user whose server moved
    ready = {"prompt": PROMPT, "negative": NEGATIVE, "model": "tiny-sd15", "sampler": sampler,
             "seed": SEED, "steps": 4, "strength": 1.0, "batch": 2}  # fmt: skip
    first = harness.run_batch(
        [
            _dialog("generate", "sdbridge-generate", [
                {"until": "disconnected"}, {"dump": "offline"},
                {"set": {"server-url": url}}, {"click": "connect"}, {"until": "connected"},
                {"set": ready}, {"dump": "ready"}, {"shot": "ready"}, {"click": "ok"}, {"until": "idle"},
            ], on_preview=[{"dump": "running"}, {"shot": "running"}]),
            _dialog("inpaint", "sdbridge-inpaint", LOOK, sel=SEL),
            _dialog("inpaint_nosel", "sdbridge-inpaint", [{"click": "cancel"}]),
            _dialog("restore", "sdbridge-restore", LOOK),
            _dialog("upscale", "sdbridge-upscale", LOOK),
            _dialog("cancel", "sdbridge-generate", [
                {"until": "connected"}, {"set": {"steps": 150, "batch": 1}}, {"click": "ok"},
                {"until": "idle", "timeout": 120}, {"dump": "after"}, {"click": "cancel"},
            ], on_preview=[{"click": "cancel"}], size=256),
        ],
        timeout=400,
        tag="dialog",
        display=xvfb_display,
    )  # fmt: skip
    assert first.results, f"GUI GIMP produced no results (rc={first.rc}):\n{first.log[-6000:]}"
    before = json.loads(prefs.read_text())
    scripted = {"prompt": "from a script", "seed": 77, "steps": 2, "server-url": url}
    second = harness.run_batch(
        [
            _dialog("restarted", "sdbridge-generate", LOOK),
            {"id": "scripted", "proc": "sdbridge-generate", "w": 64, "h": 64, "selection": None, "args": scripted},
        ],
        timeout=300,
        tag="dialog2",
        display=xvfb_display,
    )  # fmt: skip
    assert second.results, f"GUI GIMP produced no results (rc={second.rc}):\n{second.log[-6000:]}"
    shots = tmp_path_factory.mktemp("dialog-shots")
    for png in first.out.glob("*.png"):
        shutil.copy2(png, shots / png.name)
    return Dialogs(first, second, sdbridge_serve, before, shots)


def fields(rec: dict[str, Any], dump: str) -> dict[str, Any]:
    return rec["dumps"][dump]["fields"]


def test_dialog_fields_are_labelled_inputs_of_the_right_kind(dialogs: Dialogs) -> None:
    dump = fields(dialogs.dialog("generate"), "ready")
    for name, (label, kind) in DIFFUSION_FIELDS.items():
        f = dump[name]
        assert f["type"] == kind, (name, f)
        assert f["label"] is not None and f["label"].replace("_", "") == label, (name, f["label"])
        assert f["labelled_by"] == [label], (name, f["labelled_by"])  # what a screen reader announces
        assert f["visible"] and f["tooltip"], (name, f)
    assert dump["prompt"]["wrap"] != "none" and dump["negative"]["wrap"] != "none"  # multi-line, wrapped
    assert dump["random-seed"]["type"] == "CheckButton" and dump["random-seed"]["value"] is False
    assert {b["label"] for b in dialogs.dialog("generate")["dumps"]["ready"]["buttons"]} >= {"_OK", "_Cancel"}


def test_unreachable_server_is_said_in_the_dialog(dialogs: Dialogs) -> None:
    rec = dialogs.dialog("generate")
    offline = rec["dumps"]["offline"]
    status = offline["fields"]["status"]["value"]
    assert f"Cannot reach the sdbridge server at {DEAD_URL}" in status and "sdbridge serve" in status
    assert not next(b for b in offline["buttons"] if b["label"] == "_OK")["sensitive"], "OK needs a server"
    assert offline["fields"]["server-url"]["value"] == DEAD_URL  # from the shared settings


def test_choices_come_from_the_server(dialogs: Dialogs) -> None:
    welcome = dialogs.serve.welcome
    dump = fields(dialogs.dialog("generate"), "ready")
    models = [i[0] for i in dump["model"]["items"]]
    assert models == ["", *[m["name"] for m in welcome["models"]]]
    assert [i[0] for i in dump["sampler"]["items"]] == welcome["samplers"]
    assert dump["sampler"]["value"] == picked_sampler(welcome) and dump["model"]["value"] == "tiny-sd15"
    assert dump["steps"]["value"] == 4 and dump["batch"]["value"] == 2
    restore = fields(dialogs.dialog("restore"), "opened")
    assert [i[0] for i in restore["restorer"]["items"]] == ["", *welcome["restorers"]]
    assert "GFPGANv1.4" in welcome["restorers"]
    assert "prompt" not in restore and {"fidelity", "blend"} <= set(restore)
    upscale = fields(dialogs.dialog("upscale"), "opened")
    assert [i[0] for i in upscale["upscaler"]["items"]] == ["", *welcome["upscalers"]]
    assert upscale["scale"]["type"] == "SpinButton"


def test_preview_and_step_count_while_the_job_runs(dialogs: Dialogs) -> None:
    rec = dialogs.dialog("generate")
    previews = [e for e in rec["events"] if e["kind"] == "preview"]
    assert previews, rec["events"]
    # the chroot's GdkPixbuf has no WebP loader: the plug-in must have asked for a format it decodes
    assert {p["format"] for p in previews} <= {"jpeg", "png", "rgba8"}, previews
    assert all(p["w"] > 0 and p["h"] > 0 for p in previews)
    running = rec["dumps"]["running"]["fields"]
    assert re.fullmatch(r"Step \d+ / 8", running["step"]["value"]), running["step"]  # batch 2 × 4 steps
    assert running["preview"]["pixbuf"] is not None and max(running["preview"]["pixbuf"]) == 256
    assert not running["prompt"]["sensitive"], "the form is locked while the job runs"
    assert next(b for b in rec["dumps"]["running"]["buttons"] if b["label"] == "_Cancel")["sensitive"]
    for name in ("ready", "running"):
        shot = dialogs.shots / f"generate.{name}.png"
        assert shot.exists(), rec["shots"]
        with Image.open(shot) as img:
            assert img.width > 400 and img.height > 300
            assert len(img.convert("RGB").getcolors(1 << 20) or []) > 50, "the screenshot is blank"
            # the preview box: empty before the job, the (noise) preview in the running screenshot
            x, y, w, h = rec["dumps"][name]["fields"]["preview"]["rect"]
            box = img.convert("RGB").crop((x, y, x + w, y + h))
            colours = len(box.getcolors(1 << 20) or [])
            assert colours > 100 if name == "running" else colours < 10, (name, colours)


def test_ok_applies_a_batch_as_one_layer_group(dialogs: Dialogs) -> None:
    res = dialogs.res("generate")
    assert res["status"] == "success", res.get("error")
    group = res["layers"][0]
    assert group["name"] == f"{PROMPT} ({SEED}–{SEED + 1})" and res["returned_layer"] == group["name"]
    children = group["children"]
    assert [c["name"] for c in children] == [f"{PROMPT} ({SEED})", f"{PROMPT} ({SEED + 1})"]
    assert [c["visible"] for c in children] == [True, False]
    assert [c["parasite"]["seed"] for c in children] == [SEED, SEED + 1]
    assert all(c["parasite"]["negative"] == NEGATIVE for c in children)


def test_settings_are_shared_between_procedures(dialogs: Dialogs) -> None:
    opened = fields(dialogs.dialog("inpaint"), "opened")
    url = dialogs.serve.url
    expect = {"prompt": PROMPT, "negative": NEGATIVE, "server-url": url, "model": "tiny-sd15", "seed": SEED,
              "batch": 2, "steps": 4}  # fmt: skip
    assert {k: opened[k]["value"] for k in expect} == expect
    assert opened["random-seed"]["value"] is False  # a fixed seed stays fixed
    assert dialogs.res("inpaint")["status"] == "cancel" and len(dialogs.res("inpaint")["layers"]) == 1
    prefs = dialogs.res("inpaint")["prefs"]
    assert prefs["url"] == url and prefs["prompt"] == PROMPT and prefs["seed"] == SEED and prefs["fixed_seed"]


def test_inpaint_without_selection_says_so_before_any_dialog(dialogs: Dialogs) -> None:
    res = dialogs.res("inpaint_nosel")
    assert res["status"] == "execution-error" and "needs a selection" in res["error"]
    assert "dialog" not in res, "the dialog opened although the procedure cannot run"


def test_cancel_in_the_dialog_stops_the_server_job(dialogs: Dialogs) -> None:
    rec = dialogs.dialog("cancel")
    res = dialogs.res("cancel")
    assert res["status"] == "cancel" and len(res["layers"]) == 1, res
    ended = [e for e in rec["events"] if e["kind"] == "ended"]
    assert ended and "cancelled" in ended[0]["message"].lower() and not ended[0]["error"], rec["events"]
    after = rec["dumps"]["after"]
    assert after["fields"]["prompt"]["sensitive"], "editable again after the cancel"
    assert next(b for b in after["buttons"] if b["label"] == "_OK")["sensitive"]
    job = next(e["job"] for e in rec["events"] if e["kind"] == "started")
    with Remote(dialogs.serve.url, client_id=harness.client_id()) as r:  # the plug-in's own id
        r.connect()
        r.client.attach(job, GenerateRequest())  # fetch: the retained terminal event
        assert r.client.wait(job, 60).status == "cancelled"


def test_settings_survive_a_gimp_restart(dialogs: Dialogs) -> None:
    opened = fields(dialogs.dialog("restarted"), "opened")
    assert opened["prompt"]["value"] == PROMPT and opened["server-url"]["value"] == dialogs.serve.url
    assert opened["steps"]["value"] == 150  # the last dialog's (the cancelled job's) choice


def test_non_interactive_call_uses_its_arguments_and_leaves_settings_alone(dialogs: Dialogs) -> None:
    res = dialogs.res("scripted")
    assert res["status"] == "success", res.get("error")
    assert "dialog" not in res
    assert res["layers"][0]["name"] == "from a script (77)" and res["layers"][0]["parasite"]["steps"] == 2
    assert res["prefs"] == dialogs.prefs_before_second
