"""Real Krita (5 and 6): live painting from the docker's Live tab, and the schedule-type picker, through
the built plugin and a real `sdbridge serve` (tiny SD1.5, LCM preset), in one Krita session per host.

Strokes painted through Krita's API give new live pictures on the locked `[sdbridge live]` layer;
Apply copies the shown picture to a normal layer in one undo step; with Live off the server receives
no frame while painting goes on (counted in the server's own journal, by the plugin's client id), also
across a dropped connection, and a drop while on pauses Live until the reconnect. The schedule type
picked next to the sampler reaches the server (the result's params echo it) and the document's log.
"""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from krita_harness import HOSTS, KritaRun, assert_clean_exit, own_session, run_krita

from server.samplers import schedules_for
from tests.servers import ServeProcess

# One Krita session per host (~2 min on an idle 2-core machine, far more on a loaded one).
pytestmark = [pytest.mark.krita, pytest.mark.slow, pytest.mark.timeout(1500)]

SIZE = 128
LIVE = "[sdbridge live]"
STROKE1, STROKE2 = (10, 10, 40, 40), (40, 40, 40, 40)  # as the driver paints them: x, y, w, h
SELECTION = (8, 8, 32, 32)


def changes(new: np.ndarray, old: np.ndarray, rect: tuple[int, int, int, int]) -> tuple[float, float]:
    """Mean change (summed over B, G, R) inside `rect` and outside it."""
    x, y, w, h = rect
    d = np.abs(new - old)[..., :3].sum(-1)
    inside = np.zeros(d.shape, bool)
    inside[y : y + h, x : x + w] = True
    return float(d[inside].mean()), float(d[~inside].mean())


class LiveRun:
    def __init__(self, run: KritaRun, journal: list[tuple[str, str, float]]) -> None:
        self.run, self.journal = run, journal  # journal: (job id, owner, accepted_at) of every job the server took

    def ok(self, scenario: str) -> dict:
        res = self.run.result(scenario)
        assert res["ok"], res.get("error")
        assert not res["uncaught"], res["uncaught"]
        return res

    def bgra(self, name: str) -> np.ndarray:
        data = (self.run.out / name).read_bytes()
        assert len(data) == SIZE * SIZE * 4, f"{name}: {len(data)} bytes"
        return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 4).astype(int)

    def received(self, client_id: str, t0: float, t1: float) -> list[str]:
        """Jobs of that client the server accepted between t0 and t1."""
        return [j for j, owner, at in self.journal if owner.endswith("/" + client_id) and t0 <= at <= t1]


def read_journal(serve: ServeProcess) -> list[tuple[str, str, float]]:
    db = serve.log.with_name(f"{serve.log.stem}-state") / "jobs.sqlite3"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        return [(r[0], r[1], r[2]) for r in con.execute("SELECT id, owner, accepted_at FROM jobs ORDER BY seq")]


@pytest.fixture(scope="module", params=HOSTS, ids=[h.name for h in HOSTS])
def live_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> LiveRun:
    host, serve, base, home = own_session(request, tmp_path_factory, "live")
    run = run_krita(host, base, home, base / "out", ["layout", "live", "schedule"], serve.url, 900)
    print(f"\n{host.name} live run: rc={run.rc} wall={run.wall:.1f}s", file=sys.stderr)
    return LiveRun(run, read_journal(serve))


def test_the_live_session_exits_cleanly(live_run: LiveRun) -> None:
    assert_clean_exit(live_run.run)


def test_the_live_tab_fits_the_docker(live_run: LiveRun) -> None:
    res = live_run.ok("layout")
    assert Path(res["shot_1280x800"]).stat().st_size > 1000
    for size in ("1280x800", "small"):
        geo = res[f"geometry_{size}"]
        assert not geo["problems"] and geo["tabs_fit"] and geo["outer_scroll_max"] == 0, geo
        checked = geo["checked"]
        for name in ("live_toggle", "live_preset", "live_strength", "live_seed", "live_new_seed", "live_apply"):
            assert any(c.startswith("Live/") and c.endswith("sdbridge_" + name) for c in checked), (name, checked)
        assert any(c.endswith("sdbridge_schedule") for c in checked)


def test_live_shows_a_picture_on_a_locked_layer_and_strokes_change_it(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["toggle_on"] == [True, "Live: on", True]
    assert res["live_layer"] == {"name": LIVE, "locked": True, "visible": True, "on_top": True}
    before, first, one, two = (live_run.bgra(f"live.{n}.bgra") for n in ("before", "first", "stroke1", "stroke2"))
    assert (first[..., 3] == 255).all() and np.abs(first - before).mean() > 1  # a picture, not the canvas
    assert res["frame_stroke2"] > res["frame_stroke1"] > 1  # each stroke: a new frame
    # Each stroke changes the picture, most where it was painted.
    for new, old, rect in ((one, first, STROKE1), (two, one, STROKE2)):
        inside, outside = changes(new, old, rect)
        assert inside > 2 and inside > outside, (rect, inside, outside)
    assert res["state_text"].startswith("On: frame") and res["apply_enabled"]


def test_only_what_a_stroke_changed_travels(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    uploads = res["uploads"]
    assert uploads[0] == ["init", "full", None, None, SIZE, SIZE]
    assert uploads[1] == ["init", "patch", *STROKE1] and uploads[2] == ["init", "patch", *STROKE2]
    # A new connection: the server may have dropped the last canvas, so it goes in full once more.
    assert uploads[res["uploads_before_drop"]][1] == "full"


def test_layer_edits_and_selections_send_frames_and_a_selection_is_inpainted(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["frame_layer_edit"] >= 1
    assert [u[0] for u in res["selection_uploads"]] == ["image", "mask"]  # an inpaint frame: canvas + selection
    shown = live_run.bgra("live.selection.bgra")
    x, y, w, h = SELECTION
    assert (shown[y : y + h, x : x + w, 3] == 255).all()  # the selection is repainted ...
    far = np.ones((SIZE, SIZE), bool)
    far[max(0, y - 40) : y + h + 40, max(0, x - 40) : x + w + 40] = False
    assert far.any() and (shown[..., 3][far] == 0).all()  # ... and far from it the canvas shows through
    assert res["deselected_layer"] == SIZE  # without a selection: the whole canvas again


def test_apply_copies_the_live_picture_to_a_layer_in_one_undo_step(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["applied"] == {"type": "paintlayer", "locked": False}
    names = [x["name"] for x in res["after_apply"] if x["depth"] == 0]
    assert names[-2:] == ["live: a red fox (77)", LIVE]  # under the live layer, which stays on top
    assert np.array_equal(live_run.bgra("live.applied.bgra"), live_run.bgra("live.shown.bgra"))
    assert res["apply_message"] == "Applied the live picture as layer “live: a red fox (77)”"
    assert res["after_undo_matches"], res["after_undo"]


def test_live_off_sends_no_frames_while_painting_goes_on(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["toggle_off"] == [False, "Live: off", False] and not res["live_layer_after_off"]
    client = res["client_id"]
    before = set(res["ids_before_off"])
    # The server got the frames sent while Live was on (it journals every job it accepts) ...
    assert before and before <= {j for j, owner, _at in live_run.journal if owner.endswith("/" + client)}
    # ... and none while it was off and strokes went on, before and after a dropped connection.
    for tag in ("off", "off2"):
        assert res[f"{tag}_sent"] == 0 and res[f"{tag}_pending"] == [], res
        assert live_run.received(client, res[f"{tag}_t0"], res[f"{tag}_t1"]) == []
    assert res["counts"]["errors"] == 0, res["counts"]


def test_a_dropped_connection_pauses_live_and_the_reconnect_resumes_it(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["paused_state"] == "On: waiting for the server"
    assert res["resumed_frames"] >= 1


def test_closing_the_document_stops_live(live_run: LiveRun) -> None:
    res = live_run.ok("live")
    assert res["after_close"] == {"toggle": False, "state": "Off: its document was closed", "sent": 0}


def test_the_schedule_type_picker_reaches_the_server(live_run: LiveRun) -> None:
    res = live_run.ok("schedule")
    assert res["offered"] == {s: list(schedules_for(s)) for s in ("Euler a", "DPM++ 2M")}
    assert "Karras" not in res["offered"]["Euler a"]
    assert res["setting"] == "Karras"
    assert [f["status"] for f in res["finished"]] == ["result"], res["finished"]
    assert res["result_params"] == {"sampler": "DPM++ 2M", "schedule": "Karras", "steps": 3}
    assert res["logged"] == "Karras"  # saved with the document's parameters
