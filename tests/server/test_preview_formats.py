"""`hello.preview_formats`: the client lists the step-preview formats it decodes, the server uses the
first one it supports (webp when the client says nothing), and a malformed list is refused clearly."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from server import images
from server.protocol import hello
from tests.wire import Raw

JOB = {"prompt": "preview", "model": "tiny-sd15", "steps": 4, "width": 64, "height": 64, "seed": 3}


def _previews(url: str, formats: list[str] | None) -> list[dict[str, Any]]:
    raw = Raw(url, say_hello=False)
    try:
        raw.send(hello("tests", None, formats))
        assert raw.recv()["type"] == "welcome"
        job_id = uuid.uuid4().hex
        raw.send({"type": "job", "id": job_id, "kind": "generate", "params": JOB})
        seen = []
        while True:
            ev = raw.recv()
            if ev.get("type") == "progress" and "preview" in ev:
                seen.append(ev["preview"])
            if ev.get("type") in ("result", "error", "cancelled"):
                assert ev["type"] == "result", ev
                return seen
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("formats", "expected"),
    [(None, "webp"), (["png", "rgba8"], "png"), (["bmp", "jpeg", "png"], "jpeg"), (["rgba8"], "rgba8")],
)
def test_server_uses_the_first_format_it_supports(server, formats: list[str] | None, expected: str) -> None:  # type: ignore[no-untyped-def]
    previews = _previews(server.url, formats)
    assert previews, "a 4-step job always previews its first and last step"
    for p in previews:
        assert p["format"] == expected
        w, h = p["w"], p["h"]
        if expected == "rgba8":
            assert len(p["data"]) == w * h * 4
            continue
        img = Image.open(io.BytesIO(p["data"]))
        assert img.format.lower() == expected and img.size == (w, h)


def test_unknown_formats_only_fall_back_to_webp(server) -> None:  # type: ignore[no-untyped-def]
    assert {p["format"] for p in _previews(server.url, ["avif", "heic"])} == {"webp"}


@pytest.mark.parametrize("bad", ["png", [1, 2], ["x" * 40], ["png"] * 17])
def test_malformed_list_is_a_clear_handshake_error(server, bad: Any) -> None:  # type: ignore[no-untyped-def]
    raw = Raw(server.url, say_hello=False)
    try:
        raw.send({**hello("tests"), "preview_formats": bad})
        ev = raw.recv()
        assert ev["type"] == "error" and ev["code"] == "bad_field" and "preview_formats" in ev["message"], ev
    finally:
        raw.close()


def test_encode_preview_round_trips_each_format() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    for fmt in images.PREVIEW_FORMATS:
        got, data = images.encode_preview(rgb, [fmt])
        assert got == fmt
        if fmt == "rgba8":
            back = np.frombuffer(data, np.uint8).reshape(12, 20, 4)
            assert (back[..., :3] == rgb).all() and (back[..., 3] == 255).all()
        elif fmt == "png":  # lossless
            assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == rgb).all()
        else:
            assert Image.open(io.BytesIO(data)).size == (20, 12)
    assert images.preview_thumbnail(np.zeros((600, 300, 3), np.uint8)).shape == (256, 128, 3)
