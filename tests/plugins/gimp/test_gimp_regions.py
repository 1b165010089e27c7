"""Real GIMP 3: regions from layers named `region: …` (plugins/gimp/README.md), through the built
plug-in and a real server, all in one gimp-console launch.

A 128x128 photo, img2img at strength 0.6 with a region layer over its left quarter and one
over its right quarter: changing one layer's prompt changes the result in its own quarter far more
than in the other. A region layer over the whole canvas whose prompt is the image's prompt gives the
plain result bit for bit, which also shows that the region layers' own pixels are left out of the
image sent; hidden region layers are no regions; a layer group named `region: …` is one region
whose members are its pixels; a region layer without a prompt is refused with a clear message.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import gimp_harness as harness
import numpy as np
import pytest

from tests.plugins.region_checks import assert_own_quarters_change
from tests.server.jobs.edit_helpers import photo

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

W = H = 128
LEFT, RIGHT = (0, 0, W // 4, H), (W - W // 4, 0, W // 4, H)
PROMPT = "a red fox in the snow"
RED, BLUE = (255, 0, 0, 255), (0, 0, 255, 255)


def scenarios(url: str) -> list[dict[str, Any]]:
    img2img = {"prompt": PROMPT, "seed": 1234, "steps": 4, "strength": 0.6, "server-url": url}
    background = base64.b64encode(photo("chelsea", W, H).tobytes()).decode()

    def sc(id_: str, *layers: dict[str, Any], **args: Any) -> dict[str, Any]:
        return {"id": id_, "proc": "sdbridge-generate", "w": W, "h": H, "rgba": background, "layers": list(layers),
                "args": {**img2img, **args}}  # fmt: skip

    def layer(prompt: str, rect: tuple[int, int, int, int], **extra: Any) -> dict[str, Any]:
        return {"name": f"region: {prompt}", "rect": rect, "rgba": RED if rect == LEFT else BLUE, **extra}

    def pair(a: str, b: str, **extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        return layer(a, LEFT, **extra), layer(b, RIGHT, **extra)

    barn_group = {"name": "barn pixels", "group": "region: a red barn in snow", "rect": LEFT, "rgba": RED}
    return [
        sc("plain"),
        sc("whole", layer(PROMPT, (0, 0, W, H))),
        sc("hidden", *pair("a cat", "a dog", visible=False)),
        sc("ref", *pair("a cat", "a dog")),
        sc("a", *pair("a red barn in snow", "a dog")),
        sc("b", *pair("a cat", "a stormy night sky")),
        sc("group", barn_group, layer("a dog", RIGHT)),
        sc("txt2img", *pair("a red barn", "stormy sky"), strength=1.0),
        sc("no_prompt", {"name": "region:", "rect": LEFT}),
    ]


@pytest.fixture(scope="module")
def run(gimp_plugin: Any, sdbridge_serve: harness.Serve) -> harness.BatchRun:
    out = harness.run_batch(scenarios(sdbridge_serve.url), timeout=900, tag="regions")
    if not out.results:
        pytest.fail(f"GIMP batch produced no results (rc={out.rc}):\n{out.log[-6000:]}")
    print(f"\nGIMP regions batch: rc={out.rc} wall={out.wall_s:.1f}s", file=sys.stderr)
    return out


def done(run: harness.BatchRun, sid: str) -> dict[str, Any]:
    res = run.results.get(sid)
    assert res is not None, f"scenario {sid} did not run:\n{run.log[-4000:]}"
    assert "exception" not in res, res["exception"]
    assert res["status"] == "success", f"{sid}: {res['status']}: {res.get('error')}"
    return res


def result(run: harness.BatchRun, sid: str) -> np.ndarray:
    res = done(run, sid)
    w, h = res["result_size"]
    assert (w, h) == (W, H)
    return np.frombuffer(run.pixels(sid, "result"), np.uint8).reshape(h, w, 4).astype(np.int16)


def used_regions(res: dict[str, Any]) -> list[tuple[str, str]]:
    """(prompt, mask name) of the regions the server reports it used (the result layer's parasite)."""
    meta = next(layer for layer in res["layers"] if layer["name"] == res["returned_layer"])["parasite"]
    return [(r["prompt"], r["mask"]) for r in meta.get("regions") or []]


def test_two_region_layers_change_their_own_quarters(run: harness.BatchRun) -> None:
    ref = result(run, "ref")
    assert used_regions(done(run, "ref")) == [("a cat", "region-1"), ("a dog", "region-2")]
    assert_own_quarters_change(ref, result(run, "a"), result(run, "b"))


def test_region_layers_are_left_out_of_the_image_sent(run: harness.BatchRun) -> None:
    # an opaque red layer over everything, as a region with the image's own prompt: the plain result
    assert used_regions(done(run, "whole")) == [(PROMPT, "region-1")]
    assert np.array_equal(result(run, "whole"), result(run, "plain"))
    layers = {layer["name"]: layer for layer in done(run, "ref")["layers"]}
    assert layers["region: a cat"]["visible"] and layers["region: a dog"]["visible"]  # shown again afterwards


def test_hidden_region_layers_are_no_regions(run: harness.BatchRun) -> None:
    assert used_regions(done(run, "hidden")) == []
    assert np.array_equal(result(run, "hidden"), result(run, "plain"))


def test_a_region_group_is_one_region(run: harness.BatchRun) -> None:
    assert used_regions(done(run, "group")) == [("a red barn in snow", "region-1"), ("a dog", "region-2")]
    assert np.array_equal(result(run, "group"), result(run, "a"))


def test_txt2img_with_two_region_layers(run: harness.BatchRun) -> None:
    picture = result(run, "txt2img")
    assert used_regions(done(run, "txt2img")) == [("a red barn", "region-1"), ("stormy sky", "region-2")]
    assert picture[..., :3].std() > 0 and (picture[..., 3] == 255).all()


def test_a_region_layer_without_a_prompt_is_refused(run: harness.BatchRun) -> None:
    res = run.results["no_prompt"]
    assert res["status"] != "success"
    assert "'region:' has no prompt" in str(res.get("error")), res
