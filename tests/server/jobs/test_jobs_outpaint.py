"""`outpaint` through a real server: each edge grows the canvas, the strip is filled, the old pixels
away from the blend margin are unchanged; large extensions go through the fused tiler; selections."""

from __future__ import annotations

import numpy as np
import pytest

from server.client import ServerError
from tests.server.jobs.edit_helpers import apply, gray8, job, photo, rgba8

W, H = 90, 70
MARGIN = 12


@pytest.mark.parametrize(("side", "px"), [("left", 24), ("right", 20), ("top", 16), ("bottom", 22)])
def test_outpaint_each_edge(server, side: str, px: int) -> None:
    img = photo("coffee", W, H)
    res = job(
        server.url,
        "outpaint",
        {"model": "tiny-sd15", "seed": 5, "steps": 2, side: px, "margin": MARGIN},
        {"image": rgba8(img)},
    )
    left, top = (px if side == "left" else 0), (px if side == "top" else 0)
    nw = W + (px if side in ("left", "right") else 0)
    nh = H + (px if side in ("top", "bottom") else 0)
    assert res["canvas"] == {"w": nw, "h": nh}
    assert res["params"]["origin"] == [left, top] and res["params"][side] == px
    out, touched = apply(img, res, origin=(left, top))
    old = np.zeros((nh, nw), bool)
    old[top : top + H, left : left + W] = True
    # The whole new strip is opaque and filled with something other than flat colour.
    assert touched[~old].all() and (out[~old][:, 3] == 255).all()
    assert out[~old][:, :3].std() > 3
    # Old pixels: unchanged outside the returned alpha; the alpha reaches at most MARGIN px in.
    orig = np.zeros_like(out)
    orig[top : top + H, left : left + W] = img
    assert np.array_equal(out[old & ~touched], orig[old & ~touched])
    far = old.copy()
    far[
        top + (MARGIN if side == "top" else 0) : top + H - (MARGIN if side == "bottom" else 0),
        left + (MARGIN if side == "left" else 0) : left + W - (MARGIN if side == "right" else 0),
    ] = False
    assert not (touched & old & ~far).any()
    # And the returned rects are the strip plus the margin, nothing more.
    (r,) = res["images"]
    assert r["w"] * r["h"] == (nw * nh - W * H) + (MARGIN * (H if side in ("left", "right") else W))


def test_two_sides_and_a_large_extension_use_the_tiler(server) -> None:
    img = photo("chelsea", 64, 48)
    res = job(
        server.url,
        "outpaint",
        {"model": "tiny-sd15", "seed": 1, "steps": 2, "right": 96, "top": 24},
        {"image": rgba8(img)},
    )
    assert res["canvas"] == {"w": 160, "h": 72}
    assert res["params"]["tiled"] is True  # the region is wider than 1.5 native passes of the tiny model
    assert len(res["images"]) == 2
    out, touched = apply(img, res, origin=(0, 24))
    old = np.zeros((72, 160), bool)
    old[24:, :64] = True
    assert touched[~old].all() and (out[..., 3] == 255).all()
    assert np.array_equal(out[24:, :64][~touched[24:, :64]], img[~touched[24:, :64]])


def test_selection_over_transparent_area(server) -> None:
    img = photo("coffee", W, H)
    img[:, 70:, 3] = 0  # the user enlarged the canvas in the editor: a transparent strip
    res = job(
        server.url,
        "outpaint",
        {"model": "tiny-sd15", "seed": 1, "steps": 2, "margin": 8},
        {"image": rgba8(img), "mask": gray8(np.full((H, W), 255, np.uint8) * (np.arange(W) >= 60))},
    )
    assert "canvas" not in res or res["canvas"] is None
    out, touched = apply(img, res)
    assert (out[:, 70:, 3] == 255).all()  # filled
    assert not touched[:, : 70 - 8 - 1].any()
    assert np.array_equal(out[~touched], img[~touched])


def test_bad_outpaint_requests(server) -> None:
    img = photo("coffee", W, H)
    with pytest.raises(ServerError, match="left/right/top/bottom"):
        job(server.url, "outpaint", {"model": "tiny-sd15"}, {"image": rgba8(img)})
    with pytest.raises(ServerError, match="params.left"):
        job(server.url, "outpaint", {"model": "tiny-sd15", "left": -3}, {"image": rgba8(img)})
    inner = np.zeros((H, W), np.uint8)
    inner[20:30, 20:30] = 255
    with pytest.raises(ServerError, match="use `inpaint`"):
        job(server.url, "outpaint", {"model": "tiny-sd15"}, {"image": rgba8(img), "mask": gray8(inner)})
