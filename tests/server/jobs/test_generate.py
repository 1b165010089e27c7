"""txt2img / img2img through a real server on loopback, with tiny single-file checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from server.client import ServerError
from server.samplers import NAMES
from tests.conftest import connect, run


def pixels(rect: dict) -> np.ndarray:
    if rect["format"] == "rgba8":
        return np.frombuffer(rect["data"], np.uint8).reshape(rect["h"], rect["w"], 4)
    return np.asarray(Image.open(io.BytesIO(rect["data"])))


def generate(url: str, params: dict, images: dict | None = None) -> dict:
    async def go() -> dict:
        async with await connect(url) as c:
            return await c.run("generate", params, images)

    return run(go())


def test_welcome_describes_server(server) -> None:
    async def go() -> dict:
        async with await connect(server.url) as c:
            return c.welcome

    w = run(go())
    assert w["protocol"] == 1 and w["server"].startswith("sdbridge")
    assert w["device"] == "cpu" and w["vram"] is None
    assert {m["name"]: m["family"] for m in w["models"]} == {
        "tiny-sd15": "sd15",
        "tiny-sdxl": "sdxl",
        "tiny-sd15-inpaint": "sd15-inpaint",
    }
    assert "generate" in w["jobs"]
    assert {"Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC"} <= set(w["samplers"])
    assert w["limits"]["max_pixels"] > 0 and w["limits"]["max_message_bytes"] > 0


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl", "tiny-sd15-inpaint"])
def test_txt2img_is_deterministic_by_seed(server, model: str) -> None:
    p = {"prompt": "a (red:1.3) cat", "model": model, "seed": 1234, "steps": 3, "width": 64, "height": 48}
    a, b = generate(server.url, p), generate(server.url, p)
    c = generate(server.url, p | {"seed": 1235})
    img = pixels(a["images"][0])
    assert img.shape[:2] == (48, 64)
    assert a["images"][0]["seed"] == 1234 and a["params"]["seed"] == 1234
    assert np.array_equal(img, pixels(b["images"][0]))
    assert not np.array_equal(img, pixels(c["images"][0]))
    assert img.std() > 1  # not a flat/black image


def test_random_seed_is_reported(server) -> None:
    res = generate(server.url, {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64})
    seed = res["params"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**32 and res["images"][0]["seed"] == seed
    again = generate(
        server.url, {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64, "seed": seed}
    )
    assert np.array_equal(pixels(res["images"][0]), pixels(again["images"][0]))


def test_size_rounds_to_multiple_of_8(server) -> None:
    res = generate(server.url, {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 70, "height": 61, "seed": 1})
    assert (res["params"]["width"], res["params"]["height"]) == (72, 64)
    assert pixels(res["images"][0]).shape[:2] == (64, 72)


@pytest.mark.parametrize("sampler", NAMES)
def test_every_sampler_name_runs(server, sampler: str) -> None:
    res = generate(
        server.url,
        {"prompt": "a cat", "model": "tiny-sd15", "steps": 3, "sampler": sampler, "width": 64, "height": 64, "seed": 7},
    )
    assert res["params"]["sampler"] == sampler
    assert pixels(res["images"][0]).std() > 1  # NaN latents would decode to a flat black image


def test_samplers_differ(server) -> None:
    base = {"prompt": "a cat", "model": "tiny-sd15", "steps": 4, "width": 64, "height": 64, "seed": 7}
    a = pixels(generate(server.url, base | {"sampler": "Euler"})["images"][0])
    b = pixels(generate(server.url, base | {"sampler": "DPM++ 2M Karras"})["images"][0])
    assert not np.array_equal(a, b)


def test_unknown_sampler_is_an_error(server) -> None:
    with pytest.raises(ServerError) as err:
        generate(server.url, {"prompt": "x", "sampler": "Turbo Magic"})
    assert err.value.code == "bad_field" and "sampler" in str(err.value)


def test_batch_returns_distinct_seeds(server) -> None:
    res = generate(
        server.url, {"prompt": "x", "model": "tiny-sd15", "steps": 2, "width": 64, "height": 64, "seed": 10, "batch": 3}
    )
    assert [r["seed"] for r in res["images"]] == [10, 11, 12] == res["params"]["seeds"]
    imgs = [pixels(r) for r in res["images"]]
    assert not np.array_equal(imgs[0], imgs[1])


def test_img2img_follows_init_and_strength(server) -> None:
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((64, 64)))
    init = {"format": "rgba8", "w": 64, "h": 64, "data": np.dstack([photo, np.full((64, 64), 255, np.uint8)]).tobytes()}
    base = {"prompt": "a portrait", "model": "tiny-sd15", "steps": 10, "seed": 3}
    low = pixels(generate(server.url, base | {"strength": 0.2}, {"init": init})["images"][0])
    high = pixels(generate(server.url, base | {"strength": 0.9}, {"init": init})["images"][0])
    assert low.shape[:2] == (64, 64)
    err_low = np.abs(low[..., :3].astype(float) - photo).mean()
    err_high = np.abs(high[..., :3].astype(float) - photo).mean()
    assert err_low < err_high  # less strength stays closer to the init image
    again = pixels(generate(server.url, base | {"strength": 0.2}, {"init": init})["images"][0])
    assert np.array_equal(low, again)


def test_img2img_png_init_and_resize(server) -> None:
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((80, 40)).save(buf, format="PNG")
    res = generate(
        server.url,
        {"prompt": "x", "model": "tiny-sd15", "steps": 2, "seed": 1, "strength": 0.5},
        {"init": {"format": "png", "data": buf.getvalue()}},
    )
    assert pixels(res["images"][0]).shape[:2] == (40, 80)
    assert res["params"]["strength"] == 0.5


def test_rgba8_result_format(server) -> None:
    res = generate(
        server.url,
        {
            "prompt": "x",
            "model": "tiny-sd15",
            "steps": 1,
            "width": 64,
            "height": 64,
            "seed": 1,
            "result_format": "rgba8",
        },
    )
    rect = res["images"][0]
    assert rect["format"] == "rgba8" and len(rect["data"]) == 64 * 64 * 4
    png = generate(server.url, {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64, "seed": 1})
    assert np.array_equal(pixels(rect)[..., :3], pixels(png["images"][0])[..., :3])
