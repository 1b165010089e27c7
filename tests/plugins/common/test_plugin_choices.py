"""What editors offer and how they group results, against a real server: drop-down options from its
welcome, and a batch's rects grouped per batch image for every kind that takes `batch`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plugins.common import actions, choices, results
from plugins.common.client import Client
from plugins.common.jobs import (
    FaceRequest,
    GenerateRequest,
    InpaintRequest,
    JobRequest,
    OutpaintRequest,
    Sampling,
    WireImage,
)
from plugins.common.settings import Settings

W = H = 64


@pytest.fixture(scope="module")
def client(server) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    c = Client(server.url).start()
    c.wait_connected(30)
    yield c
    c.stop()


def test_options_come_from_the_welcome(client: Client) -> None:
    welcome = client.welcome or {}
    models = choices.models(welcome)
    assert models[0].id == "" and [o.id for o in models[1:]] == [m["name"] for m in welcome["models"]]
    inpainting = next(o for o in models if o.id == "tiny-sd15-inpaint")
    assert "inpainting" in inpainting.label and "SDXL" in next(o for o in models if o.id == "tiny-sdxl").label
    assert [o.id for o in choices.samplers(welcome)] == welcome["samplers"] and "Euler a" in welcome["samplers"]
    assert [o.id for o in choices.upscalers(welcome)] == ["", *welcome["upscalers"]]
    assert [o.id for o in choices.restorers(welcome)] == ["", *welcome["restorers"]]
    assert set(choices.FIELDS) == {"model", "sampler", "upscaler", "restorer", "control-model", "control-preprocess"}


def test_control_options_say_what_each_control_is() -> None:
    welcome = {"controls": [
        {"name": "control_v11p_sd15_canny", "type": "controlnet", "family": "sd15", "kind": "canny"},
        {"name": "ip-adapter_sdxl", "type": "ipadapter", "family": "sdxl", "kind": "reference"},
    ]}  # fmt: skip
    opts = choices.controls(welcome)
    assert [(o.id, o.label) for o in opts] == [
        ("", "No control"),
        ("control_v11p_sd15_canny", "control_v11p_sd15_canny (canny, sd15)"),
        ("ip-adapter_sdxl", "ip-adapter_sdxl (IP-Adapter, sdxl)"),
    ]
    assert [o.id for o in choices.controls(welcome, family="sdxl")] == ["", "ip-adapter_sdxl"]
    assert [o.id for o in choices.preprocessors()][:3] == ["none", "auto", "canny"]


def test_pick_keeps_an_offered_choice_else_the_default() -> None:
    opts = [choices.Option("", "Server default"), choices.Option("a", "a")]
    assert choices.pick("a", opts) == "a"
    assert choices.pick("gone", opts) == ""  # a model deleted on the server: back to its default
    assert choices.pick("x", []) == "x"  # nothing offered (not connected): keep what was saved
    assert choices.models(None) == [choices.Option("", "Server default")]


def test_vaes_and_loras_for_the_krita_pickers() -> None:
    welcome = {"vaes": ["sharp", 3, ""], "loras": ["detail", None]}
    assert choices.names(welcome, "vaes") == ["sharp"] and choices.names(None, "loras") == []
    assert choices.vaes(welcome) == [choices.Option("", "The model's own"), choices.Option("sharp", "sharp")]
    assert choices.loras(welcome) == [choices.Option("detail", "detail")]  # no default: inserting needs a pick


def _image() -> WireImage:
    return WireImage.rgba(bytes((x * 4) % 256 for x in range(W * H * 4)), W, H)


def _mask(*rects: tuple[int, int, int, int]) -> WireImage:
    data = bytearray(W * H)
    for x, y, w, h in rects:
        for row in range(y, y + h):
            data[row * W + x : row * W + x + w] = b"\xff" * w
    return WireImage.gray(bytes(data), W, H)


def _run(client: Client, request: JobRequest) -> dict[str, Any]:
    state = client.wait(client.submit(request), 300)
    assert state.status == "result", state.error
    assert state.result is not None
    return state.result


S = Sampling(prompt="batch", seed=100, steps=1, model="tiny-sd15")


@pytest.mark.parametrize(
    ("request_", "per_image"),
    [
        (GenerateRequest(sampling=S, width=W, height=H, batch=3), 1),
        (InpaintRequest(sampling=S, batch=2, image=_image(), mask=_mask((16, 16, 24, 24))), 1),
        (OutpaintRequest(sampling=S, batch=2, left=16, bottom=16, image=_image()), 2),  # two strips per image
        (FaceRequest(sampling=S, batch=2, image=_image(), mask=_mask((2, 2, 20, 20), (40, 40, 20, 20))), 2),
    ],
    ids=["generate", "inpaint", "outpaint", "face"],
)
def test_batch_images_group_rects_per_seed(client: Client, request_: JobRequest, per_image: int) -> None:
    result = _run(client, request_)
    images, params = result["images"], result["params"]
    groups = results.batch_images(images, params)
    assert len(groups) == len(params["seeds"]) and all(len(g) == per_image for g in groups)
    for seed, group in zip(params["seeds"], groups, strict=True):
        for i in group:
            if request_.kind == "face":  # face N of batch image B is seeded seed + B - 1 + N - 1
                assert images[i]["name"].endswith(f"batch {seed - 100 + 1}")
            else:
                assert images[i]["seed"] == seed
    assert results.batch_group_name("batch", request_.kind, params["seeds"]) == (
        f"batch ({params['seeds'][0]}–{params['seeds'][-1]})"
    )


def test_batch_of_one_is_one_group() -> None:
    imgs = [{"x": 0}, {"x": 1}, {"x": 2}]
    assert results.batch_images(imgs, {"seeds": [5]}) == [[0, 1, 2]]
    assert results.batch_images(imgs, {}) == [[0, 1, 2]]
    assert results.batch_images(imgs, {"seeds": [1, 2]}) == [[0, 1, 2]]  # uneven: never split wrongly


def test_schedule_types_follow_the_sampler_and_reach_the_server(client: Client) -> None:
    welcome = client.welcome or {}
    assert choices.schedules(welcome, "DPM++ 2M") == welcome["sampler_schedules"]["DPM++ 2M"]
    assert "Karras" in choices.schedules(welcome, "DPM++ 2M") and "Karras" not in choices.schedules(welcome, "Euler a")
    assert choices.schedules({"schedules": ["Automatic", "Karras"]}, "Euler a") == ["Automatic", "Karras"]
    assert choices.schedules({"samplers": ["Euler a"]}, "Euler a") == []  # a server without schedule types
    s = Settings(prompt="a fox", sampler="DPM++ 2M", schedule="Karras", steps=2, model="tiny-sd15", seed=3)
    assert actions.sampling(s, None).schedule == "Karras"  # not connected yet: the server will say
    assert actions.sampling(s.replace(sampler="Euler a"), welcome).schedule is None  # its Automatic, like a sampler
    assert actions.sampling(s, {"samplers": ["DPM++ 2M"]}).schedule is None  # it lacks: the server's default
    job = client.submit(GenerateRequest(sampling=actions.sampling(s, welcome), width=W, height=H))
    assert (client.wait(job, 300).result or {})["params"]["schedule"] == "Karras"
