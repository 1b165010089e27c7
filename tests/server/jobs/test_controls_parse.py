"""`controls` on every diffusion job: what welcome lists, and every bad control refused before queueing
with an error that names the field (through a real server on loopback)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from server.client import ServerError
from tests.conftest import connect, run
from tests.server.jobs.edit_helpers import photo, pixels, png, rgba8

CANNY, SCRIBBLE, XL_CANNY = (
    "tiny-control_v11p_sd15_canny",
    "tiny-control_v11p_sd15_scribble",
    "tiny-controlnet-canny-sdxl",
)
IP, XL_IP = "tiny-ip-adapter_sd15", "tiny-ip-adapter_sdxl"


def submit(url: str, kind: str, params: dict[str, Any], images: dict[str, Any]) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        async with await connect(url) as c:
            return await c.run(kind, params, images)

    return run(go())


def refused(url: str, kind: str, params: dict[str, Any], images: dict[str, Any]) -> ServerError:
    with pytest.raises(ServerError) as err:
        submit(url, kind, params, images)
    return err.value


def test_welcome_lists_controls_and_encoders(control_server) -> None:
    async def go() -> dict[str, Any]:
        async with await connect(control_server.url) as c:
            return c.welcome

    w = run(go())
    assert w["clip_vision"] == ["tiny-clip-vision"]
    assert {c["name"]: (c["type"], c["family"], c["kind"]) for c in w["controls"]} == {
        CANNY: ("controlnet", "sd15", "canny"),
        SCRIBBLE: ("controlnet", "sd15", "scribble"),
        XL_CANNY: ("controlnet", "sdxl", "canny"),
        IP: ("ipadapter", "sd15", "reference"),
        XL_IP: ("ipadapter", "sdxl", "reference"),
    }
    assert "preprocess" in w["jobs"]


GEN = {"prompt": "a cat", "model": "tiny-sd15", "steps": 1, "seed": 1, "width": 64, "height": 64}
MAP = {"map": png(photo("camera", 64, 64))}


@pytest.mark.parametrize(
    ("control", "code", "text"),
    [
        ({"model": "nope", "image": "map"}, "unknown_model", "ControlNet/"),
        ({"model": "../x", "image": "map"}, "bad_name", "not allowed"),
        ({"model": XL_CANNY, "image": "map"}, "bad_field", "SDXL ControlNet; the checkpoint is SD1.5"),
        ({"model": XL_IP, "image": "map"}, "bad_field", "SDXL IP-Adapter"),
        ({"model": CANNY, "image": "nothing"}, "bad_field", "controls[0].image: no image named 'nothing'"),
        ({"model": CANNY}, "bad_field", "controls[0].image: missing"),
        ({"model": CANNY, "image": "map", "start": 0.8, "end": 0.5}, "bad_field", "start: 0.8 is after end 0.5"),
        ({"model": CANNY, "image": "map", "strength": 3}, "bad_field", "strength: 3.0 is above the maximum 2.0"),
        ({"model": CANNY, "image": "map", "end": 1.5}, "bad_field", "controls[0].end"),
        ({"model": CANNY, "image": "map", "preprocess": "hed"}, "bad_field", "preprocess.type: 'hed' is not one of"),
        (
            {"model": CANNY, "image": "map", "preprocess": {"type": "canny", "low": 200, "high": 100}},
            "bad_field",
            "low: 200 is above high 100",
        ),  # fmt: skip
        ({"model": CANNY, "image": "map", "kind": "glow"}, "bad_field", "controls[0].kind"),
        ({"model": IP, "image": "map", "preprocess": "canny"}, "bad_field", "IP-Adapter takes the reference"),
        ("canny", "bad_field", "controls[0] must be a map"),
    ],
)
def test_bad_controls_are_refused_before_queueing(control_server, control, code: str, text: str) -> None:
    err = refused(control_server.url, "generate", GEN | {"controls": [control]}, MAP)
    assert err.code == code and text in err.event["message"], err.event


def test_controls_must_be_a_short_list(control_server) -> None:
    err = refused(control_server.url, "generate", GEN | {"controls": {"model": CANNY}}, MAP)
    assert err.code == "bad_field" and "params.controls: expected a list" in err.event["message"]
    many = [{"model": CANNY, "image": "map"}] * 9
    err = refused(control_server.url, "generate", GEN | {"controls": many}, MAP)
    assert "at most 8 controls" in err.event["message"]


@pytest.mark.parametrize(
    ("kind", "params", "images", "wrong", "size_text"),
    [
        ("generate", GEN, {}, (40, 30), "the picture (width x height) (64x64)"),
        ("generate", GEN | {"width": 60, "height": 45}, {}, (40, 40), "(64x48 or 60x45)"),  # as asked, too
        ("inpaint", {"model": "tiny-sd15"}, {"mask": png(np.full((48, 64), 255, np.uint8))}, (40, 40), "(64x48)"),
        ("face", {"model": "tiny-sd15"}, {}, (40, 40), "the image (64x48)"),
        ("outpaint", {"model": "tiny-sd15", "left": 16}, {}, (40, 40), "(64x48 or 80x48)"),
        ("upscale", {"model": "tiny-sd15", "scale": 2}, {}, (40, 40), "(64x48 or 128x96)"),
    ],
)
def test_control_image_of_another_shape_is_refused(control_server, kind, params, images, wrong, size_text) -> None:
    """A control image must be the job's canvas or a scaled copy of it; anything else names both sizes."""
    imgs = {"image": rgba8(photo("astronaut", 64, 48)), "map": png(photo("camera", *wrong)), **images}
    err = refused(control_server.url, kind, params | {"controls": [{"model": CANNY, "image": "map"}]}, imgs)
    assert err.code == "bad_image", err.event
    assert f"images.map (params.controls[0].image): {wrong[0]}x{wrong[1]}" in err.event["message"]
    assert size_text in err.event["message"] and "scaled copy" in err.event["message"]


def test_fit_rule() -> None:
    from server.jobs.controls import fits

    assert fits((64, 48), (64, 48)) and fits((128, 96), (64, 48)) and fits((32, 24), (64, 48))
    assert fits((100, 75), (104, 72)) is False  # rounding to 8 changes the shape: the asked size matches instead
    assert fits((1000, 760), (64, 48)) and not fits((1000, 800), (64, 48))  # 0.6 px off at 64x48, 3 px
    assert not fits((48, 64), (64, 48))  # portrait for landscape


def test_inpainting_checkpoints_take_their_base_familys_controls(control_server) -> None:
    """An SD1.5 inpainting checkpoint passes the family check for SD1.5 controls; SDXL ones are refused."""
    imgs = {"image": rgba8(photo("astronaut", 64, 64)), "mask": png(np.full((64, 64), 255, np.uint8)), **MAP}
    p = {"model": "tiny-sd15-inpaint", "controls": [{"model": XL_CANNY, "image": "map"}]}
    err = refused(control_server.url, "inpaint", p, imgs)
    assert "SDXL ControlNet; the checkpoint is SD1.5" in err.event["message"]


def test_preprocess_job_returns_the_map_as_a_layer(control_server) -> None:
    img = photo("camera", 96, 64)
    res = submit(control_server.url, "preprocess", {"preprocess": {"type": "canny", "low": 50, "high": 150}},
                 {"image": rgba8(img)})  # fmt: skip
    rect = res["images"][0]
    assert (rect["x"], rect["y"], rect["w"], rect["h"]) == (0, 0, 96, 64) and res["canvas"] == {"w": 96, "h": 64}
    assert res["params"]["preprocess"] == {"type": "canny", "low": 50, "high": 150}

    out = pixels(rect)
    assert (
        np.array_equal(out[..., 0], cv2.Canny(np.ascontiguousarray(img[..., :3]), 50, 150))
        and (out[..., 3] == 255).all()
    )
    auto = submit(control_server.url, "preprocess", {"kind": "scribble"}, {"image": rgba8(img)})
    assert auto["params"]["preprocess"]["type"] == "scribble"  # "auto" (the default) follows the kind
