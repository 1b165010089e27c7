"""Step-preview format negotiation: the client lists what it can decode in `hello.preview_formats`,
the server answers with the one it will use (`welcome.preview_format`) and encodes every preview so."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from server import images
from server.protocol import hello
from tests.wire import Raw

JOB = {"prompt": "a fox", "model": "tiny-sd15", "steps": 3, "width": 64, "height": 64, "seed": 3}


def session(url: str, formats: list | None) -> Raw:
    raw = Raw(url, say_hello=False)
    raw.send(hello("tests", preview_formats=formats))
    raw.welcome = raw.recv()
    return raw


def previews(url: str, formats: list | None) -> tuple[dict, list[dict]]:
    raw = session(url, formats)
    try:
        job_id = uuid.uuid4().hex
        raw.send({"type": "job", "id": job_id, "kind": "generate", "params": JOB})
        seen = []
        while True:
            ev = raw.recv()
            if ev.get("id") != job_id:
                continue
            if ev["type"] == "progress" and "preview" in ev:
                seen.append(ev["preview"])
            if ev["type"] in ("result", "error", "cancelled"):
                assert ev["type"] == "result", ev
                return raw.welcome or {}, seen
    finally:
        raw.close()


def decoded(preview: dict) -> np.ndarray:
    if preview["format"] == "rgba8":
        return np.frombuffer(preview["data"], np.uint8).reshape(preview["h"], preview["w"], 4)
    img = Image.open(io.BytesIO(preview["data"]))
    assert img.format.lower() == preview["format"]
    return np.asarray(img.convert("RGBA"))


@pytest.mark.parametrize(
    ("asked", "chosen"),
    [(None, "webp"), (["avif", "png", "webp"], "png"), (["jpeg"], "jpeg"), (["rgba8", "png"], "rgba8")],
)
def test_server_uses_the_first_format_it_can_encode(server, asked: list | None, chosen: str) -> None:
    welcome, seen = previews(server.url, asked)
    assert welcome["type"] == "welcome" and welcome["preview_format"] == chosen
    assert seen and {p["format"] for p in seen} == {chosen}
    for p in seen:
        px = decoded(p)
        assert px.shape == (p["h"], p["w"], 4) and max(p["w"], p["h"]) <= 256
        assert (px[..., 3] == 255).all()


def test_no_common_format_means_no_previews_but_a_working_job(server) -> None:
    welcome, seen = previews(server.url, ["avif"])
    assert welcome["preview_format"] is None and seen == []
    welcome, seen = previews(server.url, [])
    assert welcome["preview_format"] is None and seen == []


@pytest.mark.parametrize("bad", ["png", ["png", 3], ["x" * 40], ["png"] * 17])
def test_malformed_preview_formats_are_refused_by_name(server, bad: object) -> None:
    raw = Raw(server.url, say_hello=False)
    try:
        raw.send(hello("tests") | {"preview_formats": bad})
        ev = raw.recv()
    finally:
        raw.close()
    assert ev["type"] == "error" and ev["code"] == "bad_field"
    assert "preview_formats" in ev["message"]


@pytest.mark.parametrize("fmt", ["webp", "jpeg", "png", "rgba8"])
def test_encode_preview_round_trips_a_photo(fmt: str) -> None:
    thumb = images.preview_thumbnail(skdata.astronaut())
    assert thumb.shape == (256, 256, 3)
    got, data = images.encode_preview(thumb, ["avif", fmt])
    assert got == fmt
    px = decoded({"format": fmt, "data": data, "w": 256, "h": 256})
    err = np.abs(px[..., :3].astype(int) - thumb.astype(int)).mean()
    assert err < (0.5 if fmt in ("png", "rgba8") else 12), err


def test_encode_preview_without_a_known_format_says_which() -> None:
    with pytest.raises(ValueError, match="avif"):
        images.encode_preview(np.zeros((8, 8, 3), np.uint8), ["avif"])
