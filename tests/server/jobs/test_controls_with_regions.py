"""Controls and regional prompts in one job, through a real server on loopback with tiny models: a
ControlNet with two regions differs from the ControlNet alone and from the regions alone (whole canvas
and fused tiler), a ControlNet at strength 0 leaves the regional picture as it is, and an IP-Adapter
under the regions' attention wrappers still follows its strength and is gone after the job."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.server.jobs.edit_helpers import gray8, photo, pixels, png
from tests.server.jobs.test_controls_parse import CANNY, IP, submit
from tests.server.jobs.test_controls_sampling import BASE, diff, edges, first


def two_regions(w: int, h: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A red barn on the left third, a blue boat on the right third (gray8 masks at the canvas size)."""
    left, right = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    left[:, : w // 3] = 255
    right[:, w - w // 3 :] = 255
    regions = [{"prompt": "a red barn", "mask": "r1"}, {"prompt": "a blue boat", "mask": "r2"}]
    return regions, {"r1": gray8(left), "r2": gray8(right)}


@pytest.mark.parametrize("size", [(64, 48), (192, 160)], ids=["whole-canvas", "tiled"])
def test_a_controlnet_and_two_regions_at_once(control_server, size: tuple[int, int]) -> None:
    url, (w, h) = control_server.url, size
    p = BASE | {"model": "tiny-sd15", "width": w, "height": h, "steps": 3 if w <= 64 else 2}
    regions, masks = two_regions(w, h)
    net = {"model": CANNY, "image": "map"}
    imgs = masks | {"map": png(edges("astronaut", w, h))}
    plain = first(url, "generate", p, {})
    ctl = first(url, "generate", p | {"controls": [net]}, imgs)
    reg = first(url, "generate", p | {"regions": regions}, masks)
    res = submit_both(url, p | {"controls": [net], "regions": regions}, imgs)
    both = res[0]
    assert diff(both, ctl) > 0.5 and diff(both, reg) > 0.5 and diff(both, plain) > 0.5
    assert [r["prompt"] for r in res[1]["regions"]] == ["a red barn", "a blue boat"]
    assert res[1]["controls"][0]["model"] == CANNY
    # A ControlNet at strength 0 is not run: the regional picture, bit for bit.
    zero = first(url, "generate", p | {"controls": [net | {"strength": 0}], "regions": regions}, imgs)
    assert np.array_equal(zero, reg)


def submit_both(url: str, params: dict[str, Any], images: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    res = submit(url, "generate", params, images)
    return pixels(res["images"][0])[..., :3].astype(int), res["params"]


def test_an_ip_adapter_under_the_region_wrappers_follows_its_strength(control_server) -> None:
    url, (w, h) = control_server.url, (64, 48)
    p = BASE | {"model": "tiny-sd15"}
    regions, masks = two_regions(w, h)
    imgs = masks | {"ref": png(photo("coffee", 64, 64))}
    reg = first(url, "generate", p | {"regions": regions}, masks)
    full = first(url, "generate", p | {"regions": regions, "controls": [{"model": IP, "image": "ref"}]}, imgs)
    half_ip = [{"model": IP, "image": "ref", "strength": 0.5}]
    half = first(url, "generate", p | {"regions": regions, "controls": half_ip}, imgs)
    assert diff(full, reg) > 0.5
    # The per-step scale reaches the adapter's processors inside the wrappers: another strength, another picture.
    assert diff(full, half) > 0.1
    # Both the adapter and the wrappers are undone with the job: the next regional job is as before.
    assert np.array_equal(submit_both(url, p | {"regions": regions}, masks)[0], reg)
