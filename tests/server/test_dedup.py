"""Upload de-duplication through a real server: an image sent with its hash can be referred to by the
hash alone or changed by a rectangle; unknown hashes are answered `need_image`; the store is bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from server.client import ServerError
from server.embedded import RunningServer
from server.imagestore import pixels_hash
from server.limits import Limits
from tests.conftest import connect, run
from tests.servers import in_process

S = 64
PHOTO = np.dstack([data.astronaut()[::8, ::8][:S, :S], np.full((S, S), 255, np.uint8)])
PARAMS = {
    "prompt": "a portrait",
    "model": "tiny-sd15",
    "seed": 5,
    "steps": 4,
    "strength": 0.5,
    "result_format": "rgba8",
}


def raw(px: np.ndarray, **extra) -> dict:
    return {"format": "rgba8", "w": px.shape[1], "h": px.shape[0], "data": px.tobytes()} | extra


def pixels(res: dict) -> np.ndarray:
    r = res["images"][0]
    return np.frombuffer(r["data"], np.uint8).reshape(r["h"], r["w"], 4)


def generate(url: str, init: dict, params: dict = PARAMS) -> dict:
    async def go() -> dict:
        async with await connect(url) as c:
            return await c.run("generate", params, {"init": init})

    return run(go())


@pytest.fixture(scope="module")
def small_store(models_dir: Path) -> Iterator[RunningServer]:
    """A server that holds at most two 64² RGBA images."""
    with in_process(models_dir, Limits(image_cache_bytes=2 * S * S * 4)) as running:
        yield running


def test_welcome_says_the_server_takes_hashes(server) -> None:
    async def go() -> dict:
        async with await connect(server.url) as c:
            return c.welcome

    w = run(go())
    assert "image_hash" in w["features"] and w["limits"]["image_cache_bytes"] > 0


def test_hash_only_gives_what_the_bytes_give(server) -> None:
    full = pixels(generate(server.url, raw(PHOTO, hash=pixels_hash(PHOTO))))
    again = pixels(generate(server.url, {"hash": pixels_hash(PHOTO)}))  # another connection, too
    assert np.array_equal(full, again)


def test_a_changed_rectangle_gives_what_the_changed_image_gives(server) -> None:
    generate(server.url, raw(PHOTO, hash=pixels_hash(PHOTO)))
    changed = PHOTO.copy()
    changed[20:30, 8:40] = [250, 30, 30, 255]
    patch = raw(
        np.ascontiguousarray(changed[20:30, 8:40]), base=pixels_hash(PHOTO), x=8, y=20, hash=pixels_hash(changed)
    )
    by_patch = pixels(generate(server.url, patch))
    assert np.array_equal(by_patch, pixels(generate(server.url, raw(changed))))
    assert np.array_equal(by_patch, pixels(generate(server.url, {"hash": pixels_hash(changed)})))  # held too


def test_unknown_hashes_are_answered_need_image_and_the_same_job_can_follow(server) -> None:
    unknown = PHOTO[::-1].copy()

    async def go() -> tuple[dict, dict]:
        async with await connect(server.url) as c:
            jid = "need-1"
            with pytest.raises(ServerError) as err:
                await c.run("generate", PARAMS, {"init": {"hash": pixels_hash(unknown)}}, job_id=jid)
            res = await c.run("generate", PARAMS, {"init": raw(unknown, hash=pixels_hash(unknown))}, job_id=jid)
            return err.value.event, res

    err, res = run(go())
    assert (err["code"], err["id"], err["images"]) == ("need_image", "need-1", ["init"])
    assert res["type"] == "result" and res["id"] == "need-1"


def test_inpaint_lists_every_missing_image(server) -> None:
    async def go() -> dict:
        async with await connect(server.url) as c:
            with pytest.raises(ServerError) as err:
                await c.run("inpaint", PARAMS, {"image": {"hash": "1" * 64}, "mask": {"hash": "2" * 64}})
            return err.value.event

    assert sorted(run(go())["images"]) == ["image", "mask"]


def test_a_wrong_hash_is_a_bad_image(server) -> None:
    with pytest.raises(ServerError) as err:
        generate(server.url, raw(PHOTO, hash="0" * 64))
    assert err.value.code == "bad_image" and "images.init.hash" in str(err.value)


def test_the_store_is_bounded(small_store) -> None:
    imgs = [np.roll(PHOTO, 7 * i, axis=1) for i in range(3)]
    for img in imgs:
        generate(small_store.url, raw(img, hash=pixels_hash(img)))
    assert small_store.server.images.size <= 2 * S * S * 4
    with pytest.raises(ServerError) as err:  # the least recently used one is gone
        generate(small_store.url, {"hash": pixels_hash(imgs[0])})
    assert err.value.code == "need_image"
    generate(small_store.url, {"hash": pixels_hash(imgs[2])})
