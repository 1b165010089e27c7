"""Real Krita (5 and 6): regions from layers named `region: …` (plugins/krita/README.md, Regions),
through the built plugin's Generate action and a real server, in one Krita session per host.

A 128x128 photo, img2img at strength 0.6 with a region layer over its left quarter and one over its
right quarter: changing one layer's prompt changes the result in its own quarter far more than in
the other. A region layer over the whole canvas whose prompt is the document's prompt gives the
plain result bit for bit (so region layers are left out of the picture sent); hidden region layers
are no regions; a group layer named `region: …` is one region made of its members' pixels; layer
opacity is the region's strength.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from krita_harness import HOSTS, Host, KritaRun, build_zip, fresh_profile, prepare_template, require, run_krita

from tests.plugins.region_checks import assert_own_quarters_change
from tests.server.jobs.edit_helpers import photo
from tests.servers import ServeProcess

# The first test of a host also waits for its whole Krita session (every scenario, ~3 min on an idle
# 2-core machine, 10+ min on a loaded one): more than the suite's 600 s default per test.
pytestmark = [pytest.mark.krita, pytest.mark.slow, pytest.mark.timeout(1500)]

SIZE = 128
PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module", params=HOSTS, ids=[h.name for h in HOSTS])
def regions_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> KritaRun:
    host: Host = request.param
    require(host)
    serve: ServeProcess = request.getfixturevalue("sdb_serve")
    base = tmp_path_factory.mktemp(f"{host.name}-regions")
    template, _importer, _notes = prepare_template(host, base, build_zip(base / "build"))
    out = base / "out"
    out.mkdir()
    rgba = photo("chelsea", SIZE, SIZE)
    (out / "regions.photo.bgra").write_bytes(rgba[..., [2, 1, 0, 3]].tobytes())  # Krita's byte order
    run = run_krita(host, base, fresh_profile(template, base / "home"), out, ["regions"], serve.url, timeout=600)
    print(f"\n{host.name} regions run: rc={run.rc} wall={run.wall:.1f}s", file=sys.stderr)
    return run


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
