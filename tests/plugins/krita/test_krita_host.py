"""Real Krita 5 host tests (marker `krita`): the built zip in an isolated profile, a real
`sdbridge serve` with a tiny model on loopback, scenarios driven through the plugin's actions.

One Krita session runs all scenarios (a launch costs ~5 s); each test asserts on its scenario's
readback (pixels through the Krita API, dumped as raw BGRA by the test driver).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from krita_harness import KritaRun, build_zip, fresh_profile, prepare_template, require_krita, run_krita

from tests.servers import ServeProcess

pytestmark = pytest.mark.krita

SIZE = 128
SCENARIOS = ["generate", "img2img", "inpaint", "outpaint", "upscale", "face", "restore", "cancel", "persist"]


@pytest.fixture(scope="module")
def krita_session(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[KritaRun, dict]:
    """One Krita run of every scenario against the session's `sdbridge serve` (tiny SD1.5 + GFPGAN)."""
    require_krita()
    sdb_serve: ServeProcess = request.getfixturevalue("sdb_serve")  # only once Krita is known to be there
    base = tmp_path_factory.mktemp("krita")
    plugin_zip = build_zip(base / "build")
    template = prepare_template(base, plugin_zip)
    home = fresh_profile(template, base / "home", plugin_zip)
    run = run_krita(home, base / "out", SCENARIOS, sdb_serve.url, timeout=400)
    done = base / "out" / "done.json"
    summary = json.loads(done.read_text()) if done.exists() else {}
    return run, summary


def bgra(run: KritaRun, name: str, w: int, h: int) -> np.ndarray:
    data = (run.out / name).read_bytes()
    return np.frombuffer(data, np.uint8).reshape(h, w, 4)


def server_lacks(res: dict, kind: str) -> bool:
    jobs = res.get("welcome_jobs")
    return jobs is not None and kind not in jobs


def job_result(run: KritaRun, kind: str) -> dict:
    """The scenario named after a job kind: the server offers that kind and the action succeeded."""
    res = run.result(kind)
    # Every job kind the plugin uses exists now: a missing one is a regression, not an xfail.
    assert not server_lacks(res, kind), f"server does not offer '{kind}' (welcome.jobs = {res.get('welcome_jobs')})"
    assert res["ok"], res.get("error")
    return res


def one_new_layer(res: dict) -> None:
    assert [f["status"] for f in res["finished"]] == ["result"], res
    assert res["new_layer"] is not None, res


def test_plugin_loads_with_actions(krita_session: tuple[KritaRun, dict]) -> None:
    run, summary = krita_session
    assert summary, f"driver did not finish (rc={run.rc}):\n{run.log[-4000:]}"
    assert summary["deps_error"] is None
    assert all(summary["actions"].values()), summary["actions"]
    assert run.rc == 0
    # The docker Krita built from the plugin's factory shows the plugin's one controller.
    dock = summary["docker"]
    assert dock["found"] and dock["type"] == "SDBridgeDocker" and dock["shows_controller"], dock
    assert dock["status"] == dock["controller_status"] and dock["status"].startswith("connected"), dock


def _new_layer_ok(res: dict, name: str, size: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> None:
    assert res["ok"], res.get("error")
    assert [f["status"] for f in res["finished"]] == ["result"], res["finished"]
    layer = res["new_layer"]
    assert layer["name"] == name
    assert layer["group"].startswith("sdbridge ")
    assert layer["bounds"] == [offset[0], offset[1], size[0], size[1]]


def test_generate_txt2img_new_layer_and_undo(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = run.result("generate")
    _new_layer_ok(res, "a red fox (42)", (SIZE, SIZE))
    px = bgra(run, "generate.layer.bgra", SIZE, SIZE)
    assert (px[..., 3] == 255).all() and px[..., :3].std() > 1  # opaque, not blank
    assert res["undo_removed"] >= 1, "undo did not remove the generated layer"


def test_generate_img2img_by_strength(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = run.result("img2img")
    _new_layer_ok(res, "a red fox (7)", (SIZE, SIZE))


def test_inpaint_selection(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = job_result(run, "inpaint")
    assert [f["status"] for f in res["finished"]] == ["result"], res
    layer = bgra(run, "inpaint.layer.bgra", SIZE, SIZE).astype(int)
    before = bgra(run, "inpaint.before.bgra", SIZE, SIZE).astype(int)
    x, y, w, h = res["selection"]
    inside = layer[y : y + h, x : x + w]
    assert (inside[..., 3] > 200).mean() > 0.9  # the selection is covered
    assert np.abs(inside[..., :3] - before[y : y + h, x : x + w, :3]).mean() > 2  # and changed
    blend = 40  # outside selection + blend margin the layer is transparent (canvas unchanged)
    far = np.ones((SIZE, SIZE), bool)
    far[max(0, y - blend) : y + h + blend, max(0, x - blend) : x + w + blend] = False
    assert (layer[..., 3][far] == 0).all()
    proj = bgra(run, "inpaint.projection.bgra", SIZE, SIZE).astype(int)
    assert (proj[far] == before[far]).all()


def test_outpaint_right_by_64(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = job_result(run, "outpaint")
    assert res["doc_size"] == [SIZE + 64, SIZE]
    proj = bgra(run, "outpaint.projection.bgra", SIZE + 64, SIZE)
    strip = proj[:, SIZE:]
    assert (strip[..., 3] > 200).mean() > 0.95 and strip[..., :3].std() > 1  # the new strip is filled


def test_upscale_x2(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = job_result(run, "upscale")
    assert res["doc_size"] == [2 * SIZE, 2 * SIZE]
    assert res["new_layer"]["bounds"][2:] == [2 * SIZE, 2 * SIZE]


@pytest.mark.parametrize("kind", ["face", "restore"])
def test_face_rerender_and_restore(krita_session: tuple[KritaRun, dict], kind: str) -> None:
    # The face is given as a selection: one re-rendered (or, by the tiny GFPGAN, restored) face as a
    # new layer, named by the server's name for the piece.
    res = job_result(krita_session[0], kind)
    one_new_layer(res)
    assert res["new_layer"]["name"] == "face 1", res


def test_cancel_mid_job_leaves_no_layer(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = run.result("cancel")
    assert res["ok"], res.get("error")
    assert res["started_before_cancel"]
    assert [f["status"] for f in res["finished"]] == ["cancelled"], res["finished"]
    assert res["layers_added"] == 0


def test_params_survive_save_and_reload(krita_session: tuple[KritaRun, dict]) -> None:
    run, _ = krita_session
    res = run.result("persist")
    assert res["ok"], res.get("error")
    assert res["saved"]
    ann = res["annotation"]
    assert ann and ann[-1]["kind"] == "generate" and ann[-1]["params"]["seed"] == 21
    assert any(layer["name"] == "a red fox (21)" for layer in res["reloaded_layers"])
