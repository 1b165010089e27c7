"""Issue 12, failure 4: one client cannot make the server's memory grow without bound.

A client that never reads (but keeps sending) is held to its outbox budget and pushed back on; one
that does not drain is disconnected and its jobs stay fetchable; uploads in flight and connections
have global caps. The RSS figure is measured on a real `sdbridge serve` subprocess (/proc/PID/status)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from server.connection import WRITE_LIMIT
from server.limits import Limits
from tests.server.test_reliability import echo_job, rgba, terminal
from tests.servers import in_process, start_serve
from tests.wire import Raw

MIB = 1 << 20
RESULT = 1000 * 1000 * 4  # the one echo result the stuck client asks for
NONCE, PINGS = "n" * (16 << 10), 10_000  # 160 MiB of pings, each asking for an equally large pong
# docs/protocol.md "Memory": a client that never reads costs at most the outbox budget, the socket's
# write buffer, one chunk being packed and sent, and the one result being sent; plus allocator slack.
BOUND = Limits().max_outbox_bytes + WRITE_LIMIT + 2 * Limits().chunk_bytes + RESULT + 8 * MIB


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_a_never_reading_client_cannot_raise_rss_past_the_bound(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()  # `echo` needs no model
    srv = start_serve(tmp_path / "models", tmp_path / "serve.log")
    try:
        warm = Raw(srv.url)  # the same work once, read normally: imports and allocator pools in place
        warm.send(echo_job("warm", 1000, 1000))
        terminal(warm, "warm")
        for i in range(2000):
            warm.send({"type": "ping", "nonce": i})
        while warm.recv().get("nonce") != 1999:
            pass
        base = rss(srv.proc.pid)
        # websockets' client stops reading its socket after one unread message: it never reads again.
        stuck = Raw(srv.url, client_id="stuck", max_queue=1)
        stuck.send(echo_job("big", 1000, 1000))
        sent = [0]

        def flood() -> None:
            try:
                for i in range(PINGS):  # pings at the client's pace; each pong echoes its 16 KiB nonce
                    stuck.send({"type": "ping", "nonce": NONCE + str(i)})
                    sent[0] = i + 1
            except (OSError, ConnectionClosed):
                pass

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        peak, last, still = base, -1, 0
        while sender.is_alive() and still < 50:  # done, or blocked: the server pushes back
            peak = max(peak, rss(srv.proc.pid))
            still = still + 1 if sent[0] == last else 0
            last = sent[0]
            time.sleep(0.1)
        peak = max(peak, rss(srv.proc.pid))
        stuck.ws.socket.close()
        sender.join(10)
        grew = peak - base
        pings = sent[0] * len(NONCE) / MIB
        print(f"\nnever-reading client: {pings:.0f} MiB of pings, RSS +{grew / MIB:.1f} MiB (bound {BOUND / MIB:.0f})")
        assert grew <= BOUND
    finally:
        srv.stop()


def test_a_client_that_does_not_drain_is_dropped_and_its_job_stays_fetchable(models_dir: Path) -> None:
    limits = Limits(max_outbox_bytes=1 * MIB, drain_timeout_s=1.0)
    with in_process(models_dir, limits) as running:
        stuck = Raw(running.url, client_id="slow-reader", max_queue=1)
        jid = uuid.uuid4().hex
        # 36 MB it never reads: more than the kernel's socket buffers take, so sending stalls
        stuck.send(echo_job(jid, 3000, 3000))
        dropped = False
        for _ in range(600):  # the server closes it once the drain timeout has passed
            if not running.server.connections:
                dropped = True
                break
            time.sleep(0.05)
        assert dropped
        with pytest.raises(ConnectionClosed):  # the socket really is gone
            while True:
                stuck.ws.recv(timeout=30)
        again = Raw(running.url, client_id="slow-reader")
        again.send({"type": "fetch", "id": jid})
        assert terminal(again, jid)[1] == rgba(3000, 3000)


def test_uploads_in_flight_have_a_global_cap(models_dir: Path) -> None:
    with in_process(models_dir, Limits(max_upload_bytes=3 * MIB)) as running:
        a, b = Raw(running.url), Raw(running.url)
        chunk = b"\x00" * (1 * MIB)
        for seq in range(2):  # 2 MiB parked by one connection
            assert a.replies({"type": "blob", "ref": "a", "seq": seq, "data": chunk, "last": False}) == []
        assert b.replies({"type": "blob", "ref": "b", "seq": 0, "data": chunk, "last": False}) == []
        over = b.replies({"type": "blob", "ref": "b", "seq": 1, "data": chunk, "last": False})
        assert [e["code"] for e in over] == ["server_busy"] and "MiB" in over[0]["message"]
        a.close()  # a connection's partial uploads are released when it goes
        deadline = time.monotonic() + 30
        while running.server.admission.upload_bytes > 1 * MIB and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.replies({"type": "blob", "ref": "b2", "seq": 0, "data": chunk, "last": True}) == []


def test_connections_have_a_cap(models_dir: Path) -> None:
    with in_process(models_dir, Limits(max_connections=2)) as running:
        first, second = Raw(running.url), Raw(running.url)
        third = Raw(running.url, say_hello=False)  # refused at once, before any hello is read
        refused = third.recv()
        assert refused["code"] == "too_many_connections" and "2 connections" in refused["message"]
        for conn in (first, second):  # the two it took are served as usual
            assert conn.replies({"type": "ping", "nonce": "n"}) == [{"type": "pong", "nonce": "n"}]
