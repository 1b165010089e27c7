"""Bad input never crashes or wedges the server: each case gets an error naming the problem."""

from __future__ import annotations

import io
import struct
import uuid
import zlib
from pathlib import Path

import msgpack
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from websockets.exceptions import ConnectionClosed

from server import app as app_module
from server.app import Server, StartupError
from server.limits import Limits
from server.models.registry import ModelManager
from server.results import failure_event
from tests.servers import in_process
from tests.wire import Raw

OK_PARAMS = {"prompt": "x", "model": "tiny-sd15", "steps": 1, "width": 64, "height": 64, "seed": 1}


def job(params: dict | None = None, images: dict | None = None, kind: str = "generate", jid: str = "j") -> dict:
    return {
        "type": "job",
        "id": jid,
        "kind": kind,
        "params": OK_PARAMS if params is None else params,
        "images": images or {},
    }


def png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def png_bomb(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims w×h pixels (what a decompression bomb looks like)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small(models_dir: Path):
    limits = Limits(
        max_image_pixels=128 * 128,
        max_pixels=128 * 128,
        max_message_bytes=1 << 20,
        max_steps=4,
        max_queued_per_client=3,
    )
    with in_process(models_dir, limits) as running:
        yield running


CASES = [
    (b"\xc1\xc1garbage", "bad_frame"),
    ("a text frame", "bad_frame"),
    (msgpack.packb([1, 2, 3]), "bad_frame"),
    (msgpack.packb({"no": "type"}), "bad_frame"),
    ({"type": 5}, "bad_frame"),
    ({"type": "teleport"}, "unknown_type"),
    ({"type": "hello", "protocol": 1, "client": "again"}, "handshake"),
    (job(kind="paint-my-house"), "unknown_kind"),
    ({"type": "job", "kind": "generate", "params": OK_PARAMS}, "bad_field"),  # no id
    (job(jid="../../etc"), "bad_field"),
    (job(params={"model": "tiny-sd15"}), "bad_field"),  # no prompt
    (job(params=OK_PARAMS | {"steps": "many"}), "bad_field"),
    (job(params=OK_PARAMS | {"steps": 10_000}), "bad_field"),
    (job(params=OK_PARAMS | {"cfg": float("nan")}), "bad_field"),
    (job(params=OK_PARAMS | {"seed": True}), "bad_field"),
    (job(params=OK_PARAMS | {"width": 100_000, "height": 100_000}), "bad_field"),
    (job(params=OK_PARAMS | {"batch": 0}), "bad_field"),
    (job(params=[1, 2]), "bad_field"),
    (job(params=OK_PARAMS | {"model": "no-such-model"}), "unknown_model"),
    (job(params=OK_PARAMS | {"model": "../../../etc/passwd"}), "bad_name"),
    (job(params=OK_PARAMS | {"model": "/etc/passwd"}), "bad_name"),
    (job(params=OK_PARAMS | {"model": "C:\\Windows\\win.ini"}), "bad_name"),
    (job(images={"init": {"format": "png", "data": b"not a png at all"}}), "bad_image"),
    (job(images={"init": {"format": "png", "data": png(64, 64)[:40]}}), "bad_image"),
    (job(images={"init": {"format": "tiff", "data": b"II*"}}), "bad_field"),
    (job(images={"init": {"format": "rgba8", "w": 4, "h": 4, "data": b"\x00" * 10}}), "bad_image"),
    (job(images={"init": {"format": "rgba8", "data": b"\x00" * 16}}), "bad_field"),
    (job(images={"init": {"format": "png", "data": "a string"}}), "bad_field"),
    (job(images={"init": "nope"}), "bad_field"),
    (job(images={"init": {"format": "png", "data": png_bomb(60_000, 60_000)}}), "image_too_large"),
    (job(images={"init": {"format": "png", "data": png(300, 300)}}), "image_too_large"),
    (job(images={"init": {"format": "png", "blob": "never-sent"}}), "bad_field"),
    ({"type": "cancel", "id": "nobody"}, "not_found"),
    ({"type": "cancel"}, "bad_field"),
    ({"type": "fetch", "id": 42}, "bad_field"),
    ({"type": "fetch", "id": "never-submitted"}, "not_found"),
    ({"type": "blob", "ref": "b", "seq": 3, "data": b"x"}, "bad_field"),
]


@pytest.mark.parametrize(("frame", "code"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_frame_gets_named_error_and_connection_survives(small, frame, code) -> None:
    raw = Raw(small.url)
    replies = raw.replies(frame)
    errors = [e for e in replies if e["type"] == "error"]
    assert errors, f"no error for {frame!r}: {replies}"
    assert errors[0]["code"] == code, errors[0]
    if isinstance(frame, dict) and frame.get("type") == "job" and frame.get("id") == "j":
        assert errors[0].get("id") == frame["id"]  # job errors always name the job
    assert len(errors[0]["message"]) > 5
    after = uuid.uuid4().hex
    ok = raw.replies(job(jid=after))  # the same connection still runs a job
    assert ok and ok[0]["type"] == "queued"
    assert raw.until(after)["type"] == "result"
    raw.close()


def test_oversized_frame_closes_only_that_connection(small) -> None:
    other = Raw(small.url)
    raw = Raw(small.url)
    raw.send(b"\x00" * (2 << 20))
    told = raw.recv()  # the documented event first, then the close
    assert told["type"] == "error" and told["code"] == "message_too_large" and str(1 << 20) in told["message"]
    with pytest.raises(ConnectionClosed) as closed:
        raw.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # "message too big"
    sid = uuid.uuid4().hex
    assert other.replies(job(jid=sid))[0]["type"] == "queued"
    assert other.until(sid)["type"] == "result"


def test_queue_limit_per_client(small) -> None:
    raw = Raw(small.url)
    codes = []
    for i in range(6):
        codes += [
            e.get("code", e["type"])
            for e in raw.replies(job(jid=f"q{i}", params=OK_PARAMS | {"steps": 4}))
            if e.get("id") == f"q{i}" and e["type"] in ("queued", "error")
        ]
    assert "too_many_jobs" in codes and codes[0] == "queued"
    for i in range(6):
        raw.send({"type": "cancel", "id": f"q{i}"})


def test_duplicate_job_id(server) -> None:
    raw = Raw(server.url)
    raw.replies(job(jid="dup", params=OK_PARAMS | {"steps": 3}))
    second = [e for e in raw.replies(job(jid="dup")) if e["type"] == "error"]
    assert second and second[0]["code"] == "duplicate_id"


def test_hello_is_required_first(server) -> None:
    raw = Raw(server.url, say_hello=False)
    raw.send(job())
    ev = raw.recv()
    assert ev["type"] == "error" and ev["code"] == "handshake"
    with pytest.raises(ConnectionClosed):
        raw.recv()


def test_protocol_version_mismatch(server) -> None:
    raw = Raw(server.url, say_hello=False)
    raw.send({"type": "hello", "protocol": 99, "client": "future"})
    ev = raw.recv()
    assert ev["code"] == "protocol_version" and "99" in ev["message"]


def test_silent_client_is_dropped_after_hello_timeout(server, monkeypatch) -> None:
    monkeypatch.setattr(app_module, "HELLO_TIMEOUT_S", 0.5)
    raw = Raw(server.url, say_hello=False)
    ev = raw.recv(timeout=10)
    assert ev["code"] == "handshake" and "hello" in ev["message"]


def test_token_rules(models_dir: Path) -> None:
    with in_process(models_dir, token="s3cret") as running:
        for bad in (None, "wrong"):
            raw = Raw(running.url, token=bad)
            assert raw.welcome is not None and raw.welcome["code"] == "auth"
            with pytest.raises(ConnectionClosed) as closed:
                raw.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        good = Raw(running.url, token="s3cret")
        assert good.welcome is not None and good.welcome["type"] == "welcome"


def test_non_loopback_bind_without_token_refuses_to_start() -> None:
    import asyncio

    server = Server(ModelManager(None, torch.device("cpu"), torch.float32), Limits())
    with pytest.raises(StartupError, match="--token"):
        asyncio.run(server.run("0.0.0.0", 0))


def test_failing_job_becomes_error_and_worker_keeps_running(models_dir: Path, tmp_path: Path) -> None:
    src = str(models_dir / "tiny-sd15.safetensors")
    state = load_file(src)
    with safe_open(src, framework="pt") as f:
        meta = f.metadata()
    broken = {k: v for k, v in state.items() if not k.startswith("first_stage_model.")}  # no VAE
    save_file(broken, str(tmp_path / "broken.safetensors"), metadata=meta)
    save_file(state, str(tmp_path / "fine.safetensors"), metadata=meta)
    with in_process(tmp_path) as running:
        raw = Raw(running.url)
        raw.replies(job(jid="b", params=OK_PARAMS | {"model": "broken"}))
        ev = raw.until("b")
        assert ev["type"] == "error" and ev["code"] == "model_load" and "broken" in ev["message"]
        raw.replies(job(jid="f", params=OK_PARAMS | {"model": "fine"}))
        assert raw.until("f")["type"] == "result"


def test_out_of_memory_maps_to_its_own_code() -> None:
    ev = failure_event("j", torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB"))
    assert ev["code"] == "out_of_memory" and "smaller" in ev["message"] and "GPU" in ev["message"]
