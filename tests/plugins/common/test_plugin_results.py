"""Editor-independent handling of results: canvas changes, layer names and plans, merged pieces,
decoding, the JSON record; and the sans-I/O job state the client keeps."""

from __future__ import annotations

import pytest

from plugins.common import results
from plugins.common.actions import ActionError
from plugins.common.jobs import GenerateRequest, OutpaintRequest, UpscaleRequest
from plugins.common.jobstate import Event, JobState, latest_progress

W, H = 32, 16


def test_canvas_change() -> None:
    out = OutpaintRequest(left=8, top=4)
    assert results.canvas_change(out, {}, W, H) is None
    assert results.canvas_change(out, {"canvas": {"w": W, "h": H}}, W, H) is None
    grown = results.canvas_change(out, {"canvas": {"w": W + 8, "h": H + 4}}, W, H)
    assert grown == results.CanvasChange(W + 8, H + 4, origin=(8, 4))
    up = results.canvas_change(UpscaleRequest(), {"canvas": {"w": 2 * W, "h": 2 * H}}, W, H)
    assert up == results.CanvasChange(2 * W, 2 * H, scale=True)


def test_merge_pieces_into_one_layer() -> None:
    red, blue = b"\xff\x00\x00\xff", b"\x00\x00\xff\xff"
    x, y, w, h, rgba = results.merge_pieces([(2, 1, 2, 1, red * 2), (0, 3, 1, 2, blue * 2)])
    assert (x, y, w, h) == (0, 1, 4, 4)
    px = [rgba[i : i + 4] for i in range(0, len(rgba), 4)]
    assert px[2] == px[3] == red and px[2 * 4] == px[3 * 4] == blue
    assert px[0] == b"\0\0\0\0" and px[5] == b"\0\0\0\0"  # transparent between the pieces


def test_layer_name() -> None:
    assert results.layer_name("a  cat\non a mat", "generate", 42) == "a cat on a mat (42)"
    assert results.layer_name("", "restore") == "restore"
    assert results.layer_name("", "restore", None, "face 1") == "restore: face 1"
    assert results.layer_name("", "restore", True) == "restore"  # a bool is no seed
    long = results.layer_name("x" * 500, "generate", 1)
    assert long.endswith("… (1)") and len(long) == results.NAME_LIMIT + 4


def test_decode_and_plain() -> None:
    assert results.decode_image({"format": "gray8", "data": b"\x07", "w": 1, "h": 1}) == (1, 1, b"\x07\x07\x07\xff")
    with pytest.raises(ActionError, match="no decoder for webp"):
        results.decode_image({"format": "webp", "data": b"RIFF"})
    with pytest.raises(ActionError, match="without data"):
        results.decode_image({"format": "png"})
    assert results.plain({"a": b"x", "b": [{"c": bytearray(b"y"), "d": 1}], 2: (3,)}) == {"b": [{"d": 1}], "2": [3]}


def test_job_state_follows_events() -> None:
    job = JobState("j", GenerateRequest(), status="sent")
    assert not job.apply({"type": "queued", "position": 2}) and (job.status, job.position) == ("queued", 2)
    job.apply({"type": "progress", "step": 3, "total": 10})
    assert (job.status, job.step, job.total, job.position) == ("started", 3, 10, 2)
    snap = job.snapshot()
    job.apply({"type": "result", "images": []})
    assert job.done and job.result == {"type": "result", "images": []} and snap.status == "started"


def test_job_unknown_to_the_server_is_sent_again_unless_cancelled() -> None:
    lost = {"type": "error", "code": "not_found"}
    job = JobState("j", GenerateRequest(), status="sent")
    assert job.apply(lost) and job.status == "pending"  # the socket dropped before the server saw it
    job = JobState("j", GenerateRequest(), status="sent", cancel_requested=True)
    assert not job.apply(lost) and job.status == "error" and job.error == lost


def test_latest_progress_only() -> None:
    evs = [Event("progress", "a", {"step": 1}), Event("progress", "b"), Event("started", "a"), Event("progress", "a")]
    assert latest_progress(evs) == evs[1:]
