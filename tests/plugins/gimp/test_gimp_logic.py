"""GIMP plug-in logic without GIMP: requests from arguments, result placement, names, parasites, build."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from plugins.common import actions, results
from plugins.common.actions import ActionError, Canvas
from plugins.common.geometry import Rect
from plugins.gimp import build as gimp_build
from plugins.gimp.sdbridge_gimp import logic, procs, remote

W, H = 40, 30


def source(selection: Rect | None = None) -> Canvas:
    rgba = bytes(range(256)) * (W * H * 4 // 256) + bytes(W * H * 4 % 256)
    if selection is None:
        return Canvas(W, H, rgba)
    mask = bytearray(W * H)
    for y in range(selection.y, selection.bottom):
        mask[y * W + selection.x : y * W + selection.right] = b"\xff" * selection.w
    return Canvas(W, H, rgba, bytes(mask))


def values(spec: procs.ProcSpec, **over: object) -> dict[str, object]:
    v = {a.name: a.default for a in spec.args}
    v.update(prompt="a cat")
    v.update(over)
    return v


SPEC = procs.PROCS_BY_NAME


def test_every_procedure_is_registered_with_server_args() -> None:
    assert [p.name for p in procs.PROCS] == [
        "sdbridge-generate", "sdbridge-inpaint", "sdbridge-outpaint",
        "sdbridge-face", "sdbridge-restore", "sdbridge-upscale",
    ]  # fmt: skip
    for p in procs.PROCS:
        names = [a.name for a in p.args]
        assert len(names) == len(set(names)), p.name
        assert {"server-url", "token", "timeout"} <= set(names)
        for a in p.args:
            assert a.type in ("str", "int", "float", "bool")
            if a.type in ("int", "float"):
                assert a.lo is not None and a.hi is not None and a.lo <= a.default <= a.hi, (p.name, a.name)
    assert {"left", "right", "top", "bottom"} <= {a.name for a in SPEC["sdbridge-outpaint"].args}
    assert "scale" in {a.name for a in SPEC["sdbridge-upscale"].args}


def test_generate_txt2img_whole_canvas() -> None:
    plan = logic.plan_job(SPEC["sdbridge-generate"], values(SPEC["sdbridge-generate"], seed=5, model=""), source())
    msg = plan.request.message("j1")
    assert msg["kind"] == "generate"
    p = msg["params"]
    assert (p["width"], p["height"], p["seed"], p["prompt"]) == (40, 30, 5, "a cat")  # the server snaps to 8
    assert "model" not in p and "strength" not in p and "images" not in msg  # empty = server default
    assert plan.target == Rect(0, 0, W, H) and not plan.mask_result


def test_generate_img2img_in_selection_sends_opaque_crop() -> None:
    sel = Rect(8, 4, 16, 12)
    src = source(sel)
    plan = logic.plan_job(SPEC["sdbridge-generate"], values(SPEC["sdbridge-generate"], strength=0.4), src)
    msg = plan.request.message("j")
    init = msg["images"]["init"]
    assert (init["format"], init["w"], init["h"]) == ("rgba8", 16, 12)
    assert set(init["data"][3::4]) == {255}
    assert init["data"][0:3] == src.rgba[(4 * W + 8) * 4 : (4 * W + 8) * 4 + 3]
    assert msg["params"]["strength"] == pytest.approx(0.4)
    assert plan.target == sel and plan.mask_result


def test_generate_respects_max_pixels() -> None:
    plan = logic.plan_job(SPEC["sdbridge-generate"], values(SPEC["sdbridge-generate"]), source(), max_pixels=600)
    p = plan.request.params()
    assert p["width"] * p["height"] <= 600 and p["width"] % 8 == 0
    # the result is still placed over the full target (scaled up in GIMP)
    place = logic.placement(plan, {"x": 0, "y": 0}, p["width"], p["height"])
    assert (place.w, place.h, place.needs_scale) == (W, H, True)


def test_inpaint_sends_canvas_and_mask_and_needs_selection() -> None:
    spec = SPEC["sdbridge-inpaint"]
    with pytest.raises(ActionError, match="selection"):
        logic.plan_job(spec, values(spec), source())
    msg = logic.plan_job(spec, values(spec), source(Rect(1, 2, 3, 4))).request.message("j")
    assert msg["images"]["image"]["w"] == W and msg["images"]["mask"]["format"] == "gray8"
    assert sum(1 for b in msg["images"]["mask"]["data"] if b) == 12


@pytest.mark.parametrize("proc", ["sdbridge-generate", "sdbridge-inpaint"])
def test_empty_prompt_is_a_plugin_error(proc: str) -> None:
    with pytest.raises(ActionError, match="prompt is empty"):
        logic.plan_job(SPEC[proc], values(SPEC[proc], prompt="  "), source(Rect(0, 0, 5, 5)))


def test_outpaint_sides_or_in_canvas_selection() -> None:
    spec = SPEC["sdbridge-outpaint"]
    zero = {"left": 0, "right": 0, "top": 0, "bottom": 0}
    plan = logic.plan_job(spec, values(spec, **{**zero, "top": 24}), source(Rect(W - 10, 0, 10, H)))
    p = plan.request.params()
    assert (p["top"], p["left"], p["right"], p["bottom"]) == (24, 0, 0, 0)
    assert "mask" not in plan.request.images()  # extending: the selection plays no part
    # all sides 0 + a selection: the server's in-canvas form (fill the selection, canvas unchanged)
    plan = logic.plan_job(spec, values(spec, **zero), source(Rect(W - 10, 0, 10, H)))
    assert not any(plan.request.params()[k] for k in zero) and "mask" in plan.request.images()
    with pytest.raises(ActionError, match="at least one side"):
        logic.plan_job(spec, values(spec, **zero), source())


def test_restore_request_uses_server_field_names() -> None:
    spec = SPEC["sdbridge-restore"]
    msg = logic.plan_job(spec, values(spec, restorer="GFPGANv1.4", fidelity=0.3), source()).request.message("j")
    assert msg["kind"] == "restore"
    assert msg["params"] == {"model": "GFPGANv1.4", "fidelity": 0.3, "blend": 1.0, "result_format": "rgba8"}
    assert set(msg["images"]) == {"image"}
    welcome = {"restorers": ["GFPGANv1.4"], "models": []}
    logic.check_model({"restorer": ""}, welcome)
    with pytest.raises(ActionError, match="Restorer 'x'.*GFPGANv1.4"):
        logic.check_model({"restorer": "x"}, welcome)
    with pytest.raises(ActionError, match="no face restorer"):
        logic.check_model({"restorer": ""}, {"restorers": []})


def test_placement_of_editing_results_is_the_returned_rect() -> None:
    plan = logic.plan_job(SPEC["sdbridge-inpaint"], values(SPEC["sdbridge-inpaint"]), source(Rect(5, 5, 5, 5)))
    place = logic.placement(plan, {"x": 3, "y": 4}, 12, 10)
    assert (place.x, place.y, place.w, place.h, place.needs_scale) == (3, 4, 12, 10, False)


def test_layer_names_keep_more_of_the_prompt() -> None:
    long = results.layer_name("x" * 500, "generate", 1, limit=logic.LAYER_NAME_MAX)
    assert long.endswith("… (1)") and len(long) == logic.LAYER_NAME_MAX + 4


def test_params_parasite_roundtrip_drops_bytes() -> None:
    data = logic.params_parasite("generate", {"prompt": "ünï", "seed": 3, "blob": b"\x00"})
    assert logic.read_params_parasite(data) == {"kind": "generate", "prompt": "ünï", "seed": 3}


def test_server_capability_checks() -> None:
    welcome = {"jobs": ["generate"], "models": [{"name": "tiny"}]}
    actions.require_kind("generate", welcome)
    with pytest.raises(ActionError, match="does not offer 'upscale'.*generate"):
        actions.require_kind("upscale", welcome)
    with pytest.raises(ActionError, match="Model 'nope'.*tiny"):
        logic.check_model({"model": "nope"}, welcome)
    with pytest.raises(ActionError, match="no models"):
        logic.check_model({"model": ""}, {"models": []})


def test_url_and_error_text() -> None:
    assert remote.check_url(" ws://h:1/ ") == "ws://h:1/"
    with pytest.raises(ActionError, match="not a websocket URL"):
        remote.check_url("http://h:1/")
    text = remote.describe_error({"type": "error", "code": "unknown_model", "message": "no model 'x'"})
    assert "unknown_model" in text and "no model 'x'" in text and "not on the server" in text


def test_unreachable_server_names_url() -> None:
    with (
        pytest.raises(ActionError, match=r"Cannot reach the sdbridge server at ws://127\.0\.0\.1:9/"),
        remote.Remote("ws://127.0.0.1:9/", open_timeout=2) as server,
    ):
        server.connect()


@pytest.mark.parametrize("proc", [p.name for p in procs.PROCS])
def test_every_request_asks_for_raw_results(proc: str) -> None:
    """rgba8 results go straight into a GEGL buffer: no PNG decoding in the plug-in's Python."""
    plan = logic.plan_job(SPEC[proc], values(SPEC[proc], seed=3), source(Rect(W - 10, 0, 10, H)))
    params = plan.request.params()
    assert params["result_format"] == "rgba8"
    if proc != "sdbridge-restore":
        assert (params["seed"], params["prompt"]) == (3, "a cat")


def test_build_layout(tmp_path: Path) -> None:
    dest = gimp_build.build(tmp_path)
    entry = dest / "sdbridge.py"
    assert dest.name == "sdbridge" and entry.stat().st_mode & stat.S_IXUSR
    assert entry.read_text().startswith("#!/usr/bin/env python3")
    for rel in ("sdbridge_gimp/plugin.py", "vendor/sdbridge_common/_protocol.py", "vendor/msgpack/fallback.py",
                "vendor/websockets/sync/client.py", "README.md"):  # fmt: skip
        assert (dest / rel).is_file(), rel
    assert not list(dest.rglob("*.so")) and not list(dest.rglob("__pycache__"))
    # GIMP re-queries only when the entry file's mtime changes: it must track the newest file
    newest = max(p.stat().st_mtime for p in dest.rglob("*.py"))
    assert entry.stat().st_mtime == newest
    with zipfile.ZipFile(gimp_build.archive_path(tmp_path)) as zf:
        info = zf.getinfo("sdbridge/sdbridge.py")
        assert (info.external_attr >> 16) & stat.S_IXUSR
    json.dumps([str(p) for p in dest.iterdir()])  # plain paths, nothing exotic
