"""Jobs that outlive an editor session (plugins/common/unfinished.py), against a real `sdbridge serve`: a
record kept when the job was sent lets a new client with the same client id (the editor restarted) attach
to the job and place its result exactly as the original request would have; another client id may not."""

from __future__ import annotations

import time

from plugins.common import history, unfinished
from plugins.common.client import Client
from plugins.common.jobs import GenerateRequest, OutpaintRequest, RestoreRequest, Sampling, WireImage
from plugins.common.settings import Settings, with_client_id
from tests.plugins.common.test_plugin_client import long_job, wait_status
from tests.servers import ServeProcess


def _outpaint() -> OutpaintRequest:
    rgba = bytes(range(256)) * (64 * 64 * 4 // 256)
    return OutpaintRequest(sampling=Sampling(prompt="a shore", seed=5, steps=2), left=32, top=16,
                           image=WireImage.rgba(rgba, 64, 64))  # fmt: skip


def test_a_result_is_fetched_by_the_next_session_and_placed_as_the_original_request_would(
    sdb_serve: ServeProcess,
) -> None:
    ident = with_client_id(Settings()).client_id
    first = Client(sdb_serve.url, client_id=ident).start()
    try:
        first.wait_connected(120)
        request = _outpaint()
        job_id = first.submit(request)
        wait_status(first, job_id, ("queued", "started", "result"), timeout=120)  # the server has it
        kept = unfinished.to_json([unfinished.Unfinished.of(job_id, "doc-1", request, (64, 64))])
    finally:
        first.stop()  # the editor quits before the result is fetched

    (record,) = unfinished.from_json(kept)
    later = Client(sdb_serve.url, client_id=ident).start()
    try:
        later.attach(record.job, record.request())
        state = later.wait(record.job, 300)
        result = next(e.data for e in later.poll() if e.type == "result" and e.job_id == job_id)
    finally:
        later.stop()
    assert state.status == "result"
    entries = history.entries_from_result(record.request(), result, record.base)
    expected = history.entries_from_result(request, result, (64, 64))
    assert entries and [(e.rect, e.canvas, e.change, e.prompt, e.kind) for e in entries] == [
        (e.rect, e.canvas, e.change, e.prompt, e.kind) for e in expected
    ]
    assert entries[0].change is not None and entries[0].change.origin == (32, 16)  # the canvas grew left/up


def test_another_client_id_may_not_fetch_it(sdb_serve: ServeProcess) -> None:
    owner = Client(sdb_serve.url, client_id="owner-" + with_client_id(Settings()).client_id).start()
    try:
        owner.wait_connected(120)
        job_id = owner.submit(long_job(seed=8))
        wait_status(owner, job_id, ("queued", "started"), timeout=120)
        stranger = Client(sdb_serve.url).start()  # a new id: what the plugin had before it kept one
        try:
            stranger.attach(job_id, GenerateRequest())
            state = stranger.wait(job_id, 60)
        finally:
            stranger.stop()
        owner.cancel(job_id)
        owner.wait(job_id, 120)
    finally:
        owner.stop()
    assert state.status == "error" and (state.error or {}).get("code") == "forbidden", state


def test_records_round_trip_drop_unreadable_items_and_keep_the_newest() -> None:
    req = RestoreRequest()
    records = [unfinished.Unfinished.of(f"j{i}", "d", req, (8, 8)) for i in range(5)]
    kept: list[unfinished.Unfinished] = []
    for r in records:
        kept = unfinished.added(kept, r, limit=3)
    assert [r.job for r in kept] == ["j2", "j3", "j4"]
    assert unfinished.from_json(unfinished.to_json(kept)) == kept
    assert [r.job for r in unfinished.without(kept, "j3")] == ["j2", "j4"]
    text = unfinished.to_json(kept)[:-1] + ', {"job": "x", "kind": "teleport"}, 7]'
    assert unfinished.from_json(text) == kept and unfinished.from_json("{not json") == []
    assert isinstance(kept[0].request(), RestoreRequest) and kept[0].created <= time.time()
