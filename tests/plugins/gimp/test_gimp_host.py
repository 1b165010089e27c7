"""Real GIMP 3 tests: the built plug-in, called non-interactively through the PDB, against a real server.

Set-up (once per session): build the plug-in, install it into an isolated GIMP profile inside the
trixie chroot (tests/hosts/gimp_setup.sh), start `sdbridge serve` with a tiny model on a loopback
port, and run every scenario in ONE gimp-console batch launch (GIMP start-up dominates; the jobs
themselves take a second or two each on CPU). Each test then asserts on its scenario's outcome:
layer names, offsets, sizes, the parameters parasite, canvas size, and pixels before/after.

Without the chroot these tests skip; with env CI set they fail instead, so CI can't pass without them.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gimp_harness as harness
import numpy as np
import pytest

from tests.processes import find_descendant

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

W = H = 96  # canvas of every scenario image (the tiny test model is 64 px native)
SEL = (32, 24, 32, 40)  # x, y, w, h of the selection used by "with selection" scenarios
EDGE = (W - 16, 0, 16, H)  # a strip at the right edge: outpaint's in-canvas form
MARGIN = 12  # server blend masks grow 8 px past the selection and feather; beyond this nothing may change
STEPS = 3
PROMPT = "a red fox in the snow"


def scenarios(url: str) -> list[dict[str, Any]]:
    base = {"prompt": PROMPT, "seed": 1234, "steps": STEPS, "server-url": url}
    no_sides = {"left": 0, "right": 0, "top": 0, "bottom": 0}

    def sc(id_: str, proc: str, sel: Any = None, **args: Any) -> dict[str, Any]:
        # restore has no diffusion arguments (no prompt/seed/steps): only what it declares
        common = {"server-url": url} if proc == "restore" else base
        return {"id": id_, "proc": f"sdbridge-{proc}", "w": W, "h": H, "selection": sel, "args": {**common, **args}}

    return [
        sc("generate", "generate"),
        sc("generate_sel", "generate", SEL),
        sc("generate_img2img", "generate", strength=0.5),
        sc("inpaint_sel", "inpaint", SEL),
        sc("inpaint_nosel", "inpaint"),
        sc("outpaint_right", "outpaint", **{**no_sides, "right": 32}),
        sc("outpaint_two_sides", "outpaint", **{**no_sides, "left": 16, "bottom": 24}),
        sc("outpaint_sel_edge", "outpaint", EDGE, **no_sides),
        sc("face_sel", "face", SEL),
        sc("face_nosel", "face"),
        sc("restore", "restore"),
        sc("restore_sel", "restore", SEL),
        sc("upscale", "upscale", scale=2.0),
        sc("upscale_sel", "upscale", SEL),
        sc("generate_batch", "generate", batch=2),
        sc("inpaint_batch", "inpaint", SEL, batch=2),
        sc("outpaint_batch", "outpaint", **{**no_sides, "left": 16, "bottom": 24}, batch=2),
        sc("err_unreachable", "generate", **{"server-url": "ws://127.0.0.1:9/"}),
        sc("err_model", "generate", model="no-such-model"),
        sc("err_prompt", "generate", prompt="   "),
    ]


@dataclass
class Outcome:
    run: harness.BatchRun
    welcome: dict[str, Any]


@pytest.fixture(scope="session")
def gimp_run(gimp_plugin: Path, sdbridge_serve: harness.Serve) -> Outcome:
    run = harness.run_batch(scenarios(sdbridge_serve.url), timeout=900, tag="pytest")
    if not run.results:
        pytest.fail(f"GIMP batch produced no results (rc={run.rc}):\n{run.log[-6000:]}")
    print(f"\nGIMP batch: rc={run.rc} wall={run.wall_s:.1f}s", file=sys.stderr)
    return Outcome(run, sdbridge_serve.welcome)


# --- helpers ---------------------------------------------------------------------------------------


def result(outcome: Outcome, sid: str, request: pytest.FixtureRequest, kind: str | None = None) -> dict[str, Any]:
    offered = outcome.welcome.get("jobs") or []
    assert kind is None or kind in offered, f"server does not offer '{kind}' jobs (welcome.jobs = {offered})"
    res = outcome.run.results.get(sid)
    assert res is not None, f"scenario {sid} did not run:\n{outcome.run.log[-4000:]}"
    assert "exception" not in res, res["exception"]
    assert res["registered"], "procedure not registered in GIMP (plug-in not loaded?)\n" + outcome.run.log[-4000:]
    return res


def ok(res: dict[str, Any]) -> None:
    assert res["status"] == "success", f"{res['id']}: {res['status']}: {res.get('error')}"


def pixels(outcome: Outcome, res: dict[str, Any], which: str) -> np.ndarray:
    w, h = res[f"{which}_size"]
    return np.frombuffer(outcome.run.pixels(res["id"], which), np.uint8).reshape(h, w, 4)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel 'visibly different' map (RGB, tolerance 2 for 8-bit rounding in compositing)."""
    return (np.abs(a[..., :3].astype(int) - b[..., :3].astype(int)) > 2).any(-1)


def region(mask_shape: tuple[int, ...], rect: tuple[int, int, int, int], pad: int = 0) -> np.ndarray:
    x, y, w, h = rect
    m = np.zeros(mask_shape[:2], bool)
    m[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad] = True
    return m


def new_layer(res: dict[str, Any]) -> dict[str, Any]:
    top = res["layers"][0]
    assert top["name"] != "background", f"no new layer: {res['layers']}"
    return top


def check_layer_meta(layer: dict[str, Any], kind: str, prompt: str | None = PROMPT) -> None:
    meta = layer["parasite"]
    assert meta["kind"] == kind
    if prompt is not None:
        assert layer["name"] == f"{prompt} ({meta['seed']})"
        assert meta["prompt"] == prompt


# --- tests -----------------------------------------------------------------------------------------


def test_generate_whole_canvas(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "generate", request, "generate")
    ok(res)
    layer = new_layer(res)
    assert layer["name"] == f"{PROMPT} (1234)"
    assert (layer["x"], layer["y"], layer["w"], layer["h"]) == (0, 0, W, H)
    check_layer_meta(layer, "generate")
    assert layer["parasite"]["seed"] == 1234 and layer["parasite"]["steps"] == STEPS
    assert res["returned_layer"] == layer["name"]
    assert res["canvas"] == [W, H]
    assert changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after")).mean() > 0.5


def test_generate_in_selection(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "generate_sel", request, "generate")
    ok(res)
    layer = new_layer(res)
    assert (layer["x"], layer["y"], layer["w"], layer["h"]) == SEL
    assert layer["has_mask"], "result should be masked by the selection"
    check_layer_meta(layer, "generate")
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    inside = region(diff.shape, SEL)
    assert diff[inside].mean() > 0.5
    assert not diff[~inside].any(), "pixels outside the selection changed"


def test_generate_img2img(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "generate_img2img", request, "generate")
    ok(res)
    layer = new_layer(res)
    assert (layer["x"], layer["y"], layer["w"], layer["h"]) == (0, 0, W, H)
    assert layer["parasite"]["strength"] == pytest.approx(0.5)


def test_inpaint_selection(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "inpaint_sel", request, "inpaint")
    ok(res)
    layer = new_layer(res)
    check_layer_meta(layer, "inpaint")
    sel = region((H, W), SEL, MARGIN)
    lx, ly, lw, lh = layer["x"], layer["y"], layer["w"], layer["h"]
    assert region((H, W), (lx, ly, lw, lh)).sum() == lw * lh, "result layer outside the canvas"
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    assert diff[region(diff.shape, SEL)].mean() > 0.3
    assert not diff[~sel].any(), "pixels far outside the selection changed"


def test_inpaint_needs_selection(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "inpaint_nosel", request)
    assert res["status"] == "execution-error"
    assert "selection" in (res["error"] or "")
    assert len(res["layers"]) == 1


def test_outpaint_sides(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "outpaint_right", request, "outpaint")
    ok(res)
    assert res["canvas"] == [W + 32, H]
    bg = res["layers"][-1]
    assert (bg["x"], bg["y"], bg["w"], bg["h"]) == (0, 0, W + 32, H), "image-sized layer should grow"
    layer = new_layer(res)
    check_layer_meta(layer, "outpaint")
    assert layer["x"] + layer["w"] == W + 32 and layer["x"] <= W
    before, after = pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after")
    assert (after[:, W:, 3] > 0).mean() > 0.9, "the new strip should be filled"
    keep = W - 32  # left part of the old canvas, well away from the seam
    assert not changed(before[:, :keep], after[:, :keep]).any()


def test_outpaint_two_sides_one_layer(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    """left + bottom: the old image moves right by `left`, both new strips come back as ONE layer."""
    res = result(gimp_run, "outpaint_two_sides", request, "outpaint")
    ok(res)
    assert res["canvas"] == [W + 16, H + 24]
    new_layers = [la for la in res["layers"] if la["name"] != "background"]
    assert len(new_layers) == 1, new_layers
    bg = res["layers"][-1]
    assert (bg["x"], bg["y"], bg["w"], bg["h"]) == (0, 0, W + 16, H + 24)
    before, after = pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after")
    # the old canvas now sits at (16, 0); far from the new strips it is unchanged
    assert not changed(before[: H - 40, 40:], after[: H - 40, 16 + 40 : 16 + W]).any()
    assert (after[:, :16, 3] > 0).mean() > 0.9 and (after[H:, :, 3] > 0).mean() > 0.9


def test_outpaint_selection_at_edge(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    """All sides 0 + a selection at the edge: filled in place, the canvas keeps its size."""
    res = result(gimp_run, "outpaint_sel_edge", request, "outpaint")
    ok(res)
    assert res["canvas"] == [W, H]
    check_layer_meta(new_layer(res), "outpaint")
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    assert diff[region(diff.shape, EDGE)].mean() > 0.3
    margin = int(new_layer(res)["parasite"].get("margin", 16)) + 2
    assert not diff[~region(diff.shape, EDGE, margin)].any(), "pixels beyond the blend margin changed"


def test_face_selection(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "face_sel", request, "face")
    ok(res)
    layer = new_layer(res)
    check_layer_meta(layer, "face")
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    assert diff[region(diff.shape, SEL)].any()
    assert not diff[~region(diff.shape, SEL, MARGIN)].any()


def test_face_without_faces_reports_it(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    """No selection and nothing the detector calls a face (a gradient): a message, no layer."""
    res = result(gimp_run, "face_nosel", request, "face")
    assert res["status"] == "execution-error" and "no faces found" in res["error"], res
    assert len(res["layers"]) == 1


def test_restore_without_faces_reports_it(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "restore", request, "restore")
    assert res["status"] == "execution-error" and "no faces found" in res["error"], res
    assert res["canvas"] == [W, H] and len(res["layers"]) == 1


def test_restore_selection(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "restore_sel", request, "restore")
    ok(res)
    layer = new_layer(res)
    assert layer["name"].startswith("restore") and layer["parasite"]["model"] == "GFPGANv1.4"
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    assert diff[region(diff.shape, SEL)].any()
    assert not diff[~region(diff.shape, SEL, MARGIN)].any()


def test_upscale_image(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "upscale", request, "upscale")
    ok(res)
    assert res["canvas"] == [2 * W, 2 * H]
    bg = res["layers"][-1]
    assert (bg["w"], bg["h"]) == (2 * W, 2 * H), "existing layers should be scaled with the image"
    layer = new_layer(res)
    check_layer_meta(layer, "upscale")
    assert (layer["x"], layer["y"], layer["w"], layer["h"]) == (0, 0, 2 * W, 2 * H)


def test_upscale_selection_region(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    """With a selection the image is still scaled (the server's contract), but only the selected
    region is re-rendered: the result layer changes pixels there and nowhere else."""
    res = result(gimp_run, "upscale_sel", request, "upscale")
    ok(res)
    assert res["canvas"] == [2 * W, 2 * H]
    layer = new_layer(res)
    check_layer_meta(layer, "upscale")
    assert layer["parasite"]["region"] == dict(zip("xywh", SEL, strict=True))
    diff = changed(pixels(gimp_run, res, "base"), pixels(gimp_run, res, "after"))
    scaled = tuple(2 * v for v in SEL)
    assert diff[region(diff.shape, scaled)].any()
    assert not diff[~region(diff.shape, scaled, 2 * MARGIN)].any()


def check_batch_group(res: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """A batch of 2: one layer group `prompt (1234–1235)` holding `prompt (1234)` and `prompt (1235)`,
    the first shown; the group is what the procedure returns."""
    ok(res)
    group = new_layer(res)
    assert group["name"] == f"{PROMPT} (1234–1235)" and res["returned_layer"] == group["name"]
    assert len(res["layers"]) == 2, "one group on top of the background"
    children = group["children"]
    assert [c["name"] for c in children] == [f"{PROMPT} (1234)", f"{PROMPT} (1235)"]
    assert [c["visible"] for c in children] == [True, False]
    for child in children:
        check_layer_meta(child, kind)
    assert [c["parasite"]["seed"] for c in children] == [1234, 1235]
    return children


def test_generate_batch_is_one_layer_group(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    children = check_batch_group(result(gimp_run, "generate_batch", request, "generate"), "generate")
    assert all((c["x"], c["y"], c["w"], c["h"]) == (0, 0, W, H) for c in children)


def test_inpaint_batch_one_layer_per_seed(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "inpaint_batch", request, "inpaint")
    children = check_batch_group(res, "inpaint")
    for c in children:  # each batch image is its own changed rect around the selection
        assert region((H, W), SEL, MARGIN)[c["y"] : c["y"] + c["h"], c["x"] : c["x"] + c["w"]].all()
    diff = changed(pixels(gimp_run, res, "before"), pixels(gimp_run, res, "after"))
    assert not diff[~region(diff.shape, SEL, MARGIN)].any()


def test_outpaint_batch_strips_merge_per_seed(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    """Two sides x two seeds: four strips come back, two layers go in (one per seed), canvas grown once."""
    res = result(gimp_run, "outpaint_batch", request, "outpaint")
    children = check_batch_group(res, "outpaint")
    assert res["canvas"] == [W + 16, H + 24]
    assert [(c["w"], c["h"]) for c in children] == [(children[0]["w"], children[0]["h"])] * 2
    assert children[0]["w"] == W + 16 and children[0]["h"] == H + 24, "left and bottom strips span the canvas"


def test_unreachable_server_fails_with_message(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "err_unreachable", request)
    assert res["status"] == "execution-error"
    assert "Cannot reach the sdbridge server at ws://127.0.0.1:9/" in res["error"]
    assert len(res["layers"]) == 1


def test_unknown_model_names_available(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "err_model", request)
    assert res["status"] == "execution-error"
    assert "no-such-model" in res["error"] and "tiny-sd15" in res["error"]


def test_empty_prompt_rejected(gimp_run: Outcome, request: pytest.FixtureRequest) -> None:
    res = result(gimp_run, "err_prompt", request)
    assert res["status"] == "execution-error"
    assert "prompt is empty" in res["error"]


def test_batch_exit_and_runtime(gimp_run: Outcome) -> None:
    assert gimp_run.run.rc == 0, gimp_run.run.log[-4000:]
    assert "SDB_BATCH_DONE" in gimp_run.run.log


# --- Cancel: GIMP kills the plug-in; the job must stop on the server too -----------------------------


def test_killed_plugin_cancels_server_job(gimp_run: Outcome, sdbridge_serve: harness.Serve) -> None:
    """What GIMP's progress Cancel does (quit message, 10 ms, SIGKILL), simulated with SIGKILL while a long
    job runs: the guard process must cancel the job on the server."""
    import signal
    import threading

    from plugins.common.jobs import GenerateRequest
    from plugins.gimp.sdbridge_gimp.remote import Remote

    found: dict[str, Any] = {}
    gimp: list[int] = []  # pid of this run's GIMP: its plug-in and the guard are below it, and only those

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "killed" not in found:
            # chroot processes share our PID namespace, so the tree is visible from here
            guard = find_descendant(gimp[0], "sdbridge_gimp.cancel_guard") if gimp else None
            plugin = find_descendant(gimp[0], "plug-ins/sdbridge/sdbridge.py") if gimp else None
            if guard and plugin:
                found["job"] = guard[1][-1]
                # at once: the guard exists only while the job is in flight (queued or running), and a
                # fast machine could finish even this long job within a fraction of a second
                os.kill(plugin[0], signal.SIGKILL)
                found["killed"] = plugin[0]
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    long_job = {"prompt": PROMPT, "steps": 150, "seed": 5, "server-url": sdbridge_serve.url}
    run = harness.run_batch(
        [{"id": "killed", "proc": "sdbridge-generate", "w": 256, "h": 256, "selection": None, "args": long_job}],
        timeout=300,
        tag="cancel",
        started=gimp.append,
    )
    thread.join(5)
    assert "killed" in found, f"never saw the plug-in and its guard running:\n{run.log[-3000:]}"
    res = run.results["killed"]
    assert res.get("status") != "success" and len(res["layers"]) == 1, res
    with Remote(sdbridge_serve.url, client_id=harness.client_id(gui=False)) as r:  # the plug-in's own id
        r.connect()
        r.client.attach(found["job"], GenerateRequest())  # fetch: the retained terminal event
        state = r.client.wait(found["job"], 60)
    assert state.status == "cancelled", state
