"""Real Krita (5 and 6): regions from layers named `region: …` (plugins/krita/README.md, Regions),
through the built plugin's Generate action and a real server, in one Krita session per host.

A 128x128 photo, img2img at strength 0.6 with a region layer over its left quarter and one over its
right quarter: changing one layer's prompt changes the result in its own quarter far more than in
the other. A region layer over the whole canvas whose prompt is the document's prompt gives the
plain result bit for bit (so region layers are left out of the picture sent); hidden region layers
are no regions; a group layer named `region: …` is one region made of its members' pixels; layer
opacity is the region's strength.

The same session runs `region_list`: regions made in the docker's Regions tab (a soft selection, a
layer group), prompts typed into the list, the list following layers renamed or deleted by hand,
Show masks, and the regions coming back from a saved .kra.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from krita_harness import HOSTS, KritaRun, assert_clean_exit, own_session, run_scenarios

from tests.plugins.region_checks import assert_own_quarters_change
from tests.server.jobs.edit_helpers import photo

# The first test of a host also waits for its whole Krita session (every scenario, ~3 min on an idle
# 2-core machine, 10+ min on a loaded one): more than the suite's 600 s default per test.
pytestmark = [pytest.mark.krita, pytest.mark.slow, pytest.mark.timeout(1500)]

SIZE = 128
PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module", params=HOSTS, ids=[h.name for h in HOSTS])
def regions_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> KritaRun:
    host, serve, base, home = own_session(request, tmp_path_factory, "regions")
    out = base / "out"
    out.mkdir()
    rgba = photo("chelsea", SIZE, SIZE)
    (out / "regions.photo.bgra").write_bytes(rgba[..., [2, 1, 0, 3]].tobytes())  # Krita's byte order
    notes: list[str] = []  # a Krita crash: reported with its stacks (krita_harness.run_scenarios)
    run = run_scenarios(host, base, home, out, ["regions", "region_list"], serve.url, notes)
    print(f"\n{host.name} regions run: rc={run.rc} wall={run.wall:.1f}s {notes}", file=sys.stderr)
    return run


def test_the_regions_session_exits_cleanly(regions_run: KritaRun) -> None:
    assert_clean_exit(regions_run)


def variant(run: KritaRun, name: str) -> dict:
    res = run.result("regions")
    assert res["ok"], res.get("error")
    assert not res["uncaught"], res["uncaught"]
    got = res["variants"][name]
    assert [f["status"] for f in got["finished"]] == ["result"], got
    return got


def picture(run: KritaRun, name: str) -> np.ndarray:
    variant(run, name)
    data = (run.out / f"regions.{name}.bgra").read_bytes()
    assert len(data) == SIZE * SIZE * 4, f"{name}: no result on the preview layer"
    return np.frombuffer(data, np.uint8).reshape(SIZE, SIZE, 4).astype(np.int16)


def sent(run: KritaRun, name: str) -> list[list]:
    return [[r[0], r[1], r[2], r[3]] for r in variant(run, name)["sent"][0]]


def test_two_region_layers_change_their_own_quarters(regions_run: KritaRun) -> None:
    # top layer first: the right one was added last
    assert sent(regions_run, "ref") == [["a dog", None, SIZE, SIZE], ["a cat", None, SIZE, SIZE]]
    assert any(m.endswith("(2 regions)") for m in variant(regions_run, "ref")["messages"])
    ref = picture(regions_run, "ref")
    assert_own_quarters_change(ref, picture(regions_run, "a"), picture(regions_run, "b"))


def test_region_layers_are_left_out_of_the_picture_sent(regions_run: KritaRun) -> None:
    # an opaque red layer over everything, as a region with the document's own prompt: the plain result
    assert sent(regions_run, "whole") == [[PROMPT, None, SIZE, SIZE]]
    assert np.array_equal(picture(regions_run, "whole"), picture(regions_run, "plain"))
    shown = {x["name"]: x["visible"] for x in variant(regions_run, "ref")["layers"]}
    assert shown["region: a cat"] and shown["region: a dog"]  # shown again afterwards


def test_hidden_region_layers_are_no_regions(regions_run: KritaRun) -> None:
    assert variant(regions_run, "hidden")["sent"] == [[]]
    assert np.array_equal(picture(regions_run, "hidden"), picture(regions_run, "plain"))


def test_a_region_group_is_one_region_and_results_stay_out_of_it(regions_run: KritaRun) -> None:
    assert [r[0] for r in sent(regions_run, "group")] == ["a dog", "a red barn in snow"]
    assert np.array_equal(picture(regions_run, "group"), picture(regions_run, "a"))
    layers = variant(regions_run, "group")["layers"]
    inside = [x["name"] for x in layers if x["depth"] > 0]
    assert inside == ["barn pixels"], layers  # the preview layer is at the top level


def test_layer_opacity_is_the_region_strength(regions_run: KritaRun) -> None:
    ((prompt, strength, _w, _h),) = sent(regions_run, "half")
    assert prompt == "a cat" and strength == pytest.approx(128 / 255)


# --- the Regions tab ---------------------------------------------------------------------------------

QUARTER, FEATHER = SIZE // 4, 4


def region_list(run: KritaRun) -> dict:
    res = run.result("region_list")
    assert res["ok"], res.get("error")
    assert not res["uncaught"], res["uncaught"]
    for job in ("plain", "two", "masked"):
        assert [f["status"] for f in res[job]["finished"]] == ["result"], res[job]
    return res


def dumped(run: KritaRun, name: str, channels: int = 4) -> np.ndarray:
    data = np.frombuffer((run.out / f"region_list.{name}").read_bytes(), np.uint8)
    return data.reshape(SIZE, SIZE, channels).astype(np.int16) if channels > 1 else data.reshape(SIZE, SIZE)


def rows(res: dict, key: str) -> list[tuple]:
    return [(r["on"], r["prompt"], r["negative"], r["strength"]) for r in res[key]]


TWO = [(True, "a stormy night sky", "", 80), (True, "a red barn in snow", "blurry", 100)]


def test_regions_made_in_the_tab_change_their_own_areas(regions_run: KritaRun) -> None:
    """A region from a soft selection (left quarter) and one from a layer group (right quarter), prompts
    typed into the list: both are sent, and the picture differs from the plain one in each area."""
    res = region_list(regions_run)
    # the selection's layer: its alpha is the selection, soft edges kept; the selection is dropped
    assert res["new_layer"]["name"] == "region:" and res["new_layer"]["rows"] == 1
    selection, layer = dumped(regions_run, "selection.gray", 1), dumped(regions_run, "left.bgra")
    assert np.array_equal(layer[..., 3], selection) and ((selection > 0) & (selection < 255)).any()
    assert not res["selection_after"]
    assert rows(res, "rows") == TWO  # the group was made last: it is the top layer
    member = "'sky pixels' is a region already, or part of one ('region: a stormy night sky')"
    assert res["refused_member"] == f"region from group: {member}"
    assert res["refused_no_selection"] == "region from selection: select the area of the new region first"
    assert [(x["name"], x["type"], x["opacity"], x["blend"]) for x in res["layers"]] == [
        ("region: a stormy night sky", "grouplayer", 204, "normal"),
        ("region: a red barn in snow", "paintlayer", 255, "behind"),  # a mask that does not hide the picture
    ]
    assert res["two"]["sent"] == [[["a stormy night sky", pytest.approx(0.8), SIZE, SIZE, None],
                                   ["a red barn in snow", None, SIZE, SIZE, "blurry"]]]  # fmt: skip
    assert res["plain"]["sent"] == [[]]
    plain, two = dumped(regions_run, "plain.bgra"), dumped(regions_run, "two.bgra")
    change = np.abs(two[..., :3] - plain[..., :3]).mean(-1)
    left, right = change[:, : QUARTER - FEATHER].mean(), change[:, SIZE - QUARTER :].mean()
    print(f"\nchange vs plain: left {left:.1f}, right {right:.1f}", file=sys.stderr)
    assert left > 2 and right > 2


def test_the_list_follows_layers_renamed_or_deleted_by_hand(regions_run: KritaRun) -> None:
    res = region_list(regions_run)
    assert res["renamed_seen"] and rows(res, "rows_renamed") == [(True, "a full moon", "", 100), *TWO]
    assert res["deleted_seen"] and rows(res, "rows_deleted") == TWO
    # an ordinary layer made a region: wrapped in a group; Remove gives the group its name back, layer kept
    wrapped, unwrapped = res["wrapped"], res["unwrapped"]
    assert (wrapped["name"], wrapped["type"], wrapped["rows"]) == ("region:", "grouplayer", 3), wrapped
    assert unwrapped["child"] == ["lone layer"] and unwrapped["name"] != "region:", unwrapped
    assert unwrapped["message"] == f"Group '{unwrapped['name']}' is no region any more"
    assert rows(unwrapped, "rows") == TWO and len(res["annotation"]["regions"]) == 2


def test_show_masks_tints_each_region_and_is_never_sent(regions_run: KritaRun) -> None:
    res = region_list(regions_run)
    assert res["overlay"] == {"locked": True, "visible": True} and res["masks_checked"] == [True, "Hide masks"]
    overlay = dumped(regions_run, "overlay.bgra")
    left, right = overlay[:, : QUARTER - FEATHER], overlay[:, SIZE - QUARTER :]
    assert (left[..., 3] > 0).all() and (right[..., 3] > 0).all()
    assert (overlay[:, QUARTER + FEATHER : SIZE - QUARTER, 3] == 0).all()  # nothing where no region is
    assert not np.array_equal(left[64, 8, :3], right[64, 8, :3])  # a colour per region
    # the selection's region in the colour its layer was painted with (its thumbnail in the Layers docker)
    assert np.abs(left[64, 8, :3] - dumped(regions_run, "left.bgra")[64, 8, :3]).max() <= 2
    assert res["masked"]["sent"] == res["two"]["sent"]
    assert np.array_equal(dumped(regions_run, "masked.bgra"), dumped(regions_run, "two.bgra"))
    assert res["overlay_after_job"] and res["overlay_off"] and res["masks_text_off"] == "Show masks"
    assert "[sdbridge region masks]" not in res["layers_off"]
    assert Path(res["shot"]).stat().st_size > 1000  # the Regions tab at 1280x800, for people reviewing it


def test_regions_come_back_with_the_kra(regions_run: KritaRun) -> None:
    res = region_list(regions_run)
    assert res["saved"] and res["reloaded_seen"]
    assert res["rows_reloaded"] == res["rows_deleted"]  # the same layers (ids), prompts, negatives, strengths
    assert res["layers_reloaded"] == res["layers"]
    assert res["annotation_reloaded"] == res["annotation"]
    assert res["annotation"]["regions"][res["rows"][1]["layer"]]["negative"] == "blurry"
