"""Issue 12, failures 1, 3 and 6 (and job ownership): every delivery of a result is complete, no browser
page can drive the server, token guessing backs off, and the smaller error cases read well.

Restart/crash (failure 2), memory (4) and fairness (5) are in the sibling test_reliability_* modules."""

from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path

import msgpack
import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server import images
from server.limits import Limits
from server.protocol import ImageRef, ProtocolError, split_large_images
from server.results import failure_event
from tests.server.test_robustness import png_bomb
from tests.servers import ROOT, SDBRIDGE, in_process
from tests.wire import Raw

FAST = {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64, "seed": 1}


def rgba(w: int, h: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8).tobytes()


def echo_job(jid: str, w: int, h: int) -> dict:
    """An `echo` of a w×h rgba8 image: no model work, the result is the image itself."""
    image = {"format": "rgba8", "w": w, "h": h, "data": rgba(w, h)}
    return {"type": "job", "id": jid, "kind": "echo", "params": {"result_format": "rgba8"}, "images": {"image": image}}


def terminal(raw: Raw, jid: str) -> tuple[dict, bytes | None]:
    """The job's terminal event and the bytes of its first image, whether inline or in blob frames."""
    blobs: dict[str, list[bytes]] = {}
    while True:
        ev = raw.recv()
        if ev["type"] == "blob":
            blobs.setdefault(ev["ref"], []).append(ev["data"])
        elif ev.get("id") == jid and ev["type"] in ("result", "error", "cancelled"):
            break
    if ev["type"] != "result":
        return ev, None
    img = ev["images"][0]
    return ev, img["data"] if "data" in img else b"".join(blobs.get(img.get("blob"), []))


# --- 1. a result over one chunk is complete on every delivery ----------------------------------------


def test_splitting_a_result_for_the_wire_leaves_the_retained_event_whole() -> None:
    data = bytes(range(256)) * 9000  # 2.2 MiB
    event = {"type": "result", "id": "j", "images": [{"format": "rgba8", "data": data, "w": 1, "h": 1}]}
    for _ in range(2):
        frames = list(split_large_images(event, "r0", 1 << 20))
        assert [f["type"] for f in frames] == ["blob", "blob", "blob", "result"]
        assert frames[-1]["images"][0]["blob"] == "r0.0" and "data" not in frames[-1]["images"][0]
        assert b"".join(f["data"] for f in frames[:-1]) == data
    assert event["images"][0]["data"] is data and "blob" not in event["images"][0]


def test_large_result_is_complete_on_first_delivery_fetch_and_refetch(server) -> None:
    me, jid = uuid.uuid4().hex, uuid.uuid4().hex
    raw = Raw(server.url, client_id=me)
    raw.send(echo_job(jid, 600, 600))  # 1.44 MB > the 1 MiB chunk
    _, first = terminal(raw, jid)
    assert first == rgba(600, 600)
    for _ in range(2):  # a second and third delivery on the same connection
        raw.send({"type": "fetch", "id": jid})
        ev, again = terminal(raw, jid)
        assert ev["type"] == "result" and again == first
    other = Raw(server.url, client_id=me)  # the same client on a new connection
    other.send({"type": "fetch", "id": jid})
    assert terminal(other, jid)[1] == first
    raw.close()
    other.close()


def test_large_result_is_complete_when_fetched_after_a_drop_mid_delivery(server) -> None:
    me, jid = uuid.uuid4().hex, uuid.uuid4().hex
    raw = Raw(server.url, client_id=me)
    raw.send(echo_job(jid, 1000, 1000))  # 4 MB: four blob frames
    while raw.recv()["type"] != "blob":
        pass
    raw.ws.socket.close()  # gone after the first chunk: the rest of the delivery fails
    again = Raw(server.url, client_id=me)
    again.send({"type": "fetch", "id": jid})
    ev, data = terminal(again, jid)
    assert ev["type"] == "result" and data == rgba(1000, 1000)
    again.close()


# --- 3. browsers are refused; wrong tokens back off ------------------------------------------------


def test_a_browser_origin_is_refused_by_default(server) -> None:
    for origin in ("https://evil.example", "http://127.0.0.1:8765", "null"):
        with pytest.raises(InvalidStatus) as refused:
            Raw(server.url, origin=origin)
        assert refused.value.response.status_code == 403
        assert b"--allow-origin" in refused.value.response.body
    plain = Raw(server.url)  # plugins, CLI and scripts send no Origin
    assert plain.welcome is not None and plain.welcome["type"] == "welcome"


def test_allow_origin_permits_exactly_the_named_pages(models_dir: Path) -> None:
    with in_process(models_dir, allow_origins=("http://localhost:3000",)) as running:
        page = Raw(running.url, origin="http://localhost:3000")
        assert page.welcome is not None and page.welcome["type"] == "welcome"
        with pytest.raises(InvalidStatus):
            Raw(running.url, origin="http://localhost:3001")


def test_wrong_tokens_from_one_peer_back_off(models_dir: Path) -> None:
    with in_process(models_dir, token="s3cret") as running:
        codes = []
        for _ in range(7):
            raw = Raw(running.url, token="guess")
            assert raw.welcome is not None
            codes.append(raw.welcome["code"])
        assert codes[:5] == ["auth"] * 5 and codes[5:] == ["rate_limited"] * 2
        locked = Raw(running.url, token="s3cret")  # even the right token waits out the lockout
        assert locked.welcome is not None and locked.welcome["code"] == "rate_limited"
        assert "try again in" in locked.welcome["message"]


# --- jobs belong to their client ---------------------------------------------------------------------


def test_another_clients_job_cannot_be_cancelled_or_fetched(server) -> None:
    jid = uuid.uuid4().hex
    owner = Raw(server.url, client_id=uuid.uuid4().hex)
    owner.send({"type": "job", "id": jid, "kind": "generate", "params": FAST | {"steps": 3}})
    stranger = Raw(server.url, client_id=uuid.uuid4().hex)
    for frame in ({"type": "cancel", "id": jid}, {"type": "fetch", "id": jid}):
        errors = [e for e in stranger.replies(frame) if e["type"] == "error"]
        assert errors and errors[0]["code"] == "forbidden" and jid in errors[0]["message"]
    assert terminal(owner, jid)[0]["type"] == "result"  # not cancelled by the stranger


def test_the_shared_token_in_the_request_may_fetch_any_job(models_dir: Path) -> None:
    with in_process(models_dir, token="s3cret") as running:
        jid = uuid.uuid4().hex
        owner = Raw(running.url, token="s3cret", client_id="krita-1")
        owner.send(echo_job(jid, 8, 8))
        terminal(owner, jid)
        admin = Raw(running.url, token="s3cret", client_id="cli")
        for wrong in ({}, {"token": "nope"}, {"token": "s3crét"}):
            replies = admin.replies({"type": "fetch", "id": jid, **wrong})
            assert [e["code"] for e in replies if e["type"] == "error"] == ["forbidden"]
        admin.send({"type": "fetch", "id": jid, "token": "s3cret"})
        assert terminal(admin, jid)[1] == rgba(8, 8)


# --- 6. the smaller items ------------------------------------------------------------------------------


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_16_bit_png_is_scaled_not_clipped() -> None:
    img = Image.fromarray(np.array([[40000, 65535], [0, 257]], np.uint16))
    out = images.decode(ImageRef("png", encoded(img, "PNG")), 1 << 20, "init")
    assert out[..., 0].tolist() == [[156, 255], [0, 1]] and (out[..., 3] == 255).all()


def test_palette_transparency_and_cmyk_convert_to_rgba() -> None:
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 0), 1)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    out = images.decode(ImageRef("png", buf.getvalue()), 1 << 20, "init")
    assert out[0, 0].tolist() == [255, 0, 0, 0] and out[0, 1].tolist() == [0, 0, 255, 255]
    cmyk = images.decode(ImageRef("jpeg", encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")), 1 << 20, "i")
    assert np.abs(cmyk[0, 0, :3].astype(int) - [255, 0, 0]).max() <= 3


def test_declared_format_must_match_the_bytes() -> None:
    jpeg = encoded(Image.new("RGB", (8, 8), (10, 20, 30)), "JPEG")
    with pytest.raises(ProtocolError) as wrong:
        images.decode(ImageRef("png", jpeg), 1 << 20, "init")
    assert wrong.value.code == "bad_image" and "declared png" in wrong.value.message and "JPEG" in wrong.value.message
    assert images.decode(ImageRef("jpeg", jpeg), 1 << 20, "init").shape == (8, 8, 4)


@pytest.fixture(scope="module")
def small(models_dir: Path):
    with in_process(models_dir, Limits(max_message_bytes=1 << 20, max_image_pixels=128 * 128)) as running:
        yield running


def test_readable_errors_for_deep_msgpack_and_bombs(small) -> None:
    raw = Raw(small.url)
    deep = [e for e in raw.replies(b"\x91" * 5000 + b"\x00") if e["type"] == "error"][0]
    assert deep["code"] == "bad_frame" and deep["message"].endswith("containers nested too deeply")
    bomb = {"format": "png", "data": png_bomb(60_000, 60_000)}
    frame = {"type": "job", "id": "b", "kind": "generate", "params": FAST, "images": {"init": bomb}}
    err = [e for e in raw.replies(frame) if e["type"] == "error"][0]
    assert err["code"] == "image_too_large" and str(128 * 128) in err["message"] and "3600000000" in err["message"]


def test_oversize_frame_gets_the_documented_event_before_the_close(small) -> None:
    raw = Raw(small.url)
    raw.send(b"\x00" * ((1 << 20) + 10))
    told = raw.recv()
    assert told["code"] == "message_too_large" and "blob" in told["message"]
    with pytest.raises(ConnectionClosed):
        raw.recv()


def test_allocation_failures_are_out_of_memory_on_cpu_too() -> None:
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 80 GB")
    for exc in (cpu, MemoryError()):
        ev = failure_event("j", exc)
        assert ev["code"] == "out_of_memory" and "CPU memory" in ev["message"]
    assert failure_event("j", ValueError("bad"))["code"] == "job_failed"


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = subprocess.run(
            [*SDBRIDGE, "serve", "--port", str(port), "--models", str(tmp_path), "--state-dir", str(tmp_path / "s")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: port {port} on 127.0.0.1 is already in use (another server?): pick one with --port"]
    assert "Traceback" not in res.stderr


def test_msgpack_garbage_is_named_not_typed() -> None:
    from server.protocol import unpack

    cases = ((b"\xc1", "starts no msgpack value"), (b"\x81\xa1a", "ends in the middle"), (b"\x01\x02", "left"))
    for data, words in cases:
        with pytest.raises(ProtocolError) as bad:
            unpack(data, 100)
        assert words in bad.value.message and not bad.value.message.endswith(": ")
    assert msgpack.packb({"type": "ok"})  # the happy path is unchanged
