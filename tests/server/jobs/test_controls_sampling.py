"""Controls in the denoising loop of every diffusion job, through a real server on loopback with tiny
ControlNets / IP-Adapters and scikit-image photos: a canny map changes the picture and strength 0 is no
control, two ControlNets add up, a control on a selective tiled upscale changes only the selected tiles,
an IP-Adapter reference changes the picture, and the editing jobs take controls on their crops."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from server.imaging import control as cimg
from tests.server.jobs.edit_helpers import gray8, photo, pixels, png, rgba8
from tests.server.jobs.test_controls_parse import CANNY, IP, SCRIBBLE, XL_CANNY, XL_IP, submit

W, H = 64, 48
BASE = {"prompt": "a photo of an astronaut", "negative": "blurry", "seed": 7, "steps": 3, "cfg": 6.0,
        "sampler": "Euler", "width": W, "height": H, "result_format": "rgba8"}  # fmt: skip


def edges(name: str, w: int = W, h: int = H) -> np.ndarray:
    return cimg.to_display(cimg.canny(photo(name, w, h), 100, 200))


_seen: dict[str, np.ndarray] = {}


def first(url: str, kind: str, params: dict[str, Any], images: dict[str, Any]) -> np.ndarray:
    """The job's first image as int RGB (a job without controls is run once per server and reused)."""
    key = f"{url} {kind} {sorted(params.items())!r}" if not params.get("controls") else None
    if key is not None and key in _seen:
        return _seen[key]
    out = pixels(submit(url, kind, params, images)["images"][0])[..., :3].astype(int)
    if key is not None:
        _seen[key] = out
    return out


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.mark.parametrize(("model", "net", "size"), [("tiny-sd15", CANNY, (W, H)), ("tiny-sdxl", XL_CANNY, (128, 96))])
def test_canny_control_changes_the_picture_and_strength_zero_is_none(control_server, model, net, size) -> None:
    url, (w, h) = control_server.url, size
    p = BASE | {"model": model, "width": w, "height": h}
    imgs = {"map": png(edges("astronaut", w, h))}
    plain = first(url, "generate", p, {})
    ctl = first(url, "generate", p | {"controls": [{"model": net, "image": "map"}]}, imgs)
    assert diff(ctl, plain) > 2
    zero = first(url, "generate", p | {"controls": [{"model": net, "image": "map", "strength": 0}]}, imgs)
    assert np.array_equal(zero, plain)


def test_a_layer_preprocessed_on_the_server_equals_the_map_sent_ready(control_server) -> None:
    url = control_server.url
    layer = {"layer": rgba8(photo("astronaut", W, H)), "map": png(edges("astronaut"))}
    ready = first(url, "generate", BASE | {"model": "tiny-sd15", "controls": [{"model": CANNY, "image": "map"}]}, layer)
    auto = [{"model": CANNY, "image": "layer", "preprocess": "auto"}]  # the kind (canny) picks the preprocessor
    assert np.array_equal(first(url, "generate", BASE | {"model": "tiny-sd15", "controls": auto}, layer), ready)


def test_two_controlnets_at_once_add_up(control_server) -> None:
    url = control_server.url
    p = BASE | {"model": "tiny-sd15"}
    scribble = np.zeros((H, W, 4), np.uint8)
    scribble[..., 3] = 255
    scribble[10:38, 20:24] = 255  # a drawn white stroke on black
    imgs = {"edges": png(edges("astronaut")), "lines": rgba8(scribble)}
    a = {"model": CANNY, "image": "edges", "strength": 0.8}
    b = {"model": SCRIBBLE, "image": "lines", "preprocess": "scribble", "end": 0.5}
    one = first(url, "generate", p | {"controls": [a]}, imgs)
    both = first(url, "generate", p | {"controls": [a, b]}, imgs)
    assert diff(both, one) > 0.5
    # Two residuals add up the same in either order (float addition commutes).
    assert np.array_equal(first(url, "generate", p | {"controls": [b, a]}, imgs), both)
    # With the second at strength 0 the pair is the first alone.
    assert np.array_equal(first(url, "generate", p | {"controls": [a, b | {"strength": 0}]}, imgs), one)


def test_a_control_on_a_tiled_generate_and_hires_pass(control_server) -> None:
    """Beyond one pass the fused tiler runs: each tile's ControlNet sees the map under it."""
    url, w, h = control_server.url, 192, 160
    p = BASE | {"model": "tiny-sd15", "width": w, "height": h, "steps": 2}
    imgs = {"map": png(edges("coffee", w, h))}
    plain = first(url, "generate", p, {})
    ctl = first(url, "generate", p | {"controls": [{"model": CANNY, "image": "map"}]}, imgs)
    assert diff(ctl, plain) > 1
    hp = BASE | {"model": "tiny-sd15", "steps": 2, "hires": {"scale": 2, "steps": 2, "strength": 0.5}}
    small = {"map": png(edges("coffee"))}
    hires = submit(url, "generate", hp | {"controls": [{"model": CANNY, "image": "map"}]}, small)
    assert (hires["images"][0]["w"], hires["images"][0]["h"]) == (2 * W, 2 * H)
    assert hires["params"]["controls"][0]["model"] == CANNY


def test_sdxl_controls_with_a_refiner_and_hires(control_server) -> None:
    """The base takes the ControlNet and the IP-Adapter; the refiner, which finishes the first pass and
    draws the hires pass, takes none (they are not made for its UNet)."""
    url = control_server.url
    p = BASE | {"model": "tiny-sdxl", "width": 128, "height": 96, "steps": 4, "refiner": "tiny-sdxl-refiner",
                "refiner_switch": 0.5, "hires": {"scale": 1.5, "steps": 2, "strength": 0.4}}  # fmt: skip
    imgs = {"map": png(edges("astronaut", 128, 96)), "ref": png(photo("coffee", 64, 64))}
    ctl = [{"model": XL_CANNY, "image": "map"}, {"model": XL_IP, "image": "ref"}]
    res = submit(url, "generate", p | {"controls": ctl}, imgs)
    assert (res["images"][0]["w"], res["images"][0]["h"]) == (192, 144)
    assert [c["model"] for c in res["params"]["controls"]] == [XL_CANNY, XL_IP]
    assert diff(pixels(res["images"][0])[..., :3].astype(int), first(url, "generate", p, {})) > 0.5


def test_a_control_on_a_selective_tiled_upscale_changes_only_the_selected_tiles(control_server) -> None:
    url, w, h = control_server.url, 96, 64
    img = photo("chelsea", w, h)
    sel = np.zeros((h, w), np.uint8)
    sel[16:40, 24:56] = 255  # x2: rows 32-80, columns 48-112 of the output
    p = {"model": "tiny-sd15", "seed": 2, "steps": 4, "scale": 2, "strength": 0.5, "output": "full",
         "result_format": "rgba8"}  # fmt: skip
    imgs = {"image": rgba8(img), "mask": gray8(sel), "map": png(edges("camera", w, h))}  # a map at the source size
    plain = submit(url, "upscale", p, imgs)
    ctl = submit(url, "upscale", p | {"controls": [{"model": CANNY, "image": "map"}]}, imgs)
    a, b = pixels(plain["images"][0])[..., :3].astype(int), pixels(ctl["images"][0])[..., :3].astype(int)
    changed = (a != b).any(-1)
    assert changed[32:80, 48:112].mean() > 0.5  # the selection's tiles ran with the control
    ys, xs = np.nonzero(changed)
    tw, th = ctl["params"]["tile"]
    # Everything the control changed lies within one tile of the selection: no other tile ran.
    assert ys.min() >= 32 - th and ys.max() < 80 + th and xs.min() >= 48 - tw and xs.max() < 112 + tw
    assert ctl["params"]["tiles"] == plain["params"]["tiles"] and ctl["params"]["controls"][0]["model"] == CANNY


@pytest.mark.parametrize(("model", "adapter", "size"), [("tiny-sd15", IP, (W, H)), ("tiny-sdxl", XL_IP, (128, 96))])
def test_ip_adapter_reference_changes_the_picture(control_server, model: str, adapter: str, size) -> None:
    url, (w, h) = control_server.url, size
    p = BASE | {"model": model, "width": w, "height": h}
    plain = first(url, "generate", p, {})
    ref = {"ref": png(photo("coffee", 80, 80))}  # a reference picture of any size
    styled = first(url, "generate", p | {"controls": [{"model": adapter, "image": "ref"}]}, ref)
    assert diff(styled, plain) > 1
    zero = first(url, "generate", p | {"controls": [{"model": adapter, "image": "ref", "strength": 0}]}, ref)
    assert np.array_equal(zero, plain)
    # The adapter is installed for the job only: the next plain job is the plain picture again.
    assert np.array_equal(first(url, "generate", p, {}), plain)


def test_controlnet_and_ip_adapter_together(control_server) -> None:
    url = control_server.url
    p = BASE | {"model": "tiny-sd15"}
    imgs = {"map": png(edges("astronaut")), "ref": png(photo("coffee", 64, 64))}
    net, ip = {"model": CANNY, "image": "map"}, {"model": IP, "image": "ref"}
    both = first(url, "generate", p | {"controls": [net, ip]}, imgs)
    assert diff(both, first(url, "generate", p | {"controls": [net]}, imgs)) > 0.5


@pytest.mark.parametrize(
    ("kind", "params", "extra"),
    [
        ("inpaint", {"strength": 0.9}, "mask"),
        ("outpaint", {"left": 16, "strength": 0.9}, None),
        ("face", {"strength": 0.8}, "mask"),
    ],
)
def test_editing_jobs_take_controls_on_their_crops(control_server, kind: str, params, extra: str | None) -> None:
    url = control_server.url
    img = photo("astronaut", W, H)
    sel = np.zeros((H, W), np.uint8)
    sel[12:36, 16:44] = 255
    imgs: dict[str, Any] = {"image": rgba8(img), "map": png(edges("camera"))}
    if extra:
        imgs[extra] = gray8(sel)
    p = {"model": "tiny-sd15", "prompt": "a face", "seed": 3, "steps": 4, "result_format": "rgba8"} | params
    plain = submit(url, kind, p, imgs)
    ctl = submit(url, kind, p | {"controls": [{"model": CANNY, "image": "map"}]}, imgs)
    assert [(r["x"], r["y"], r["w"], r["h"]) for r in ctl["images"]] == [
        (r["x"], r["y"], r["w"], r["h"]) for r in plain["images"]
    ]
    assert any(
        diff(pixels(a).astype(int), pixels(b).astype(int)) > 0.2
        for a, b in zip(plain["images"], ctl["images"], strict=True)
    )
    assert ctl["params"]["controls"][0]["model"] == CANNY


def test_inpaint_control_on_an_inpainting_checkpoint(control_server) -> None:
    """The 9-channel UNet gets its extra channels; the ControlNet the 4 latent ones (and the inpaint map)."""
    url = control_server.url
    img = photo("astronaut", W, H)
    sel = np.zeros((H, W), np.uint8)
    sel[12:36, 16:44] = 255
    imgs = {"image": rgba8(img), "mask": gray8(sel), "layer": rgba8(img)}
    p = {"model": "tiny-sd15-inpaint", "seed": 3, "steps": 3, "result_format": "rgba8"}
    plain = submit(url, "inpaint", p, imgs)
    ctl = submit(url, "inpaint", p | {"controls": [{"model": CANNY, "image": "layer", "preprocess": "inpaint"}]}, imgs)
    assert diff(pixels(ctl["images"][0]).astype(int), pixels(plain["images"][0]).astype(int)) > 0.2
