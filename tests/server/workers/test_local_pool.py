"""Two local CPU workers (`serve --devices cpu,cpu`) through a real server: two jobs at once with the
single-worker results, model affinity, cancel/fetch/partial tiles as with one worker, workers listed in
`welcome` and `status`, and `serve`'s refusals of bad --devices and of --ray without Ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from server.embedded import RunningServer
from server.limits import Limits
from server.workers.cluster import INSTALL_HINT
from server.workers.config import WorkerConfig
from server.workers.local import LocalWorker
from server.workers.pool import WorkerPool
from tests.server.jobs.edit_helpers import photo, rgba8
from tests.server.workers.streams import GEN, TERMINAL, images, job, run_jobs, status
from tests.servers import ROOT, SDBRIDGE, in_process, start_serve
from tests.wire import Raw

CPU = torch.device("cpu")
CPU2 = [CPU, CPU]


@pytest.fixture(scope="module")
def pool(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("pool-models")
    for name in ("tiny-sd15", "tiny-sdxl"):
        shutil.copy(models_dir / f"{name}.safetensors", root)
    with in_process(root, devices=CPU2) as running:
        yield running


def collect(raw: Raw, ids: set[str]) -> list[dict[str, Any]]:
    """Every event until each of `ids` has ended."""
    events, left = [], set(ids)
    while left:
        ev = raw.recv(120)
        events.append(ev)
        if ev.get("type") in TERMINAL and ev.get("id") in left:
            left.discard(ev["id"])
    return events


def test_two_workers_run_two_jobs_at_once_with_the_single_worker_results(pool, server) -> None:  # noqa: ANN001
    events = run_jobs(pool.url, [job("a", seed=1), job("b", seed=2)])
    kinds = [(e["type"], e.get("id")) for e in events]
    first_result = min(i for i, k in enumerate(kinds) if k[0] == "result")
    started = {e["id"]: e["worker"] for e in events if e["type"] == "started"}
    assert set(started) == {"a", "b"} and started["a"] != started["b"]  # one job on each worker
    assert max(kinds.index(("started", j)) for j in "ab") < first_result  # both running before either ends
    for j in "ab":
        steps = [e["step"] for e in events if e["type"] == "progress" and e["id"] == j]
        assert steps == list(range(1, GEN["steps"] + 1))
        assert any("preview" in e for e in events if e["type"] == "progress" and e["id"] == j)
    alone = run_jobs(server.url, [job("a", seed=1), job("b", seed=2)])
    assert images(events) == images(alone)  # same seeds, same bytes, whichever worker ran them


def test_affinity_two_models_alternating_no_reload_after_warm_up(pool) -> None:  # noqa: ANN001
    """Each worker's cache holds one of the two models at a time: only routing by model avoids reloads."""
    root = pool.server.models.root
    one_model = 30_000_000  # tiny-sdxl is 28.2 MB loaded, tiny-sd15 13.7 MB: not both
    workers = [
        LocalWorker(WorkerConfig(root, vram_budget=one_model, ram_budget=0).manager(CPU), Limits(), i) for i in (0, 1)
    ]
    placed: dict[str, set[str]] = {"tiny-sd15": set(), "tiny-sdxl": set()}
    with in_process(root, pool=WorkerPool(list(workers))) as running:
        raw = Raw(running.url)
        try:
            for rnd in range(4):  # alternating models, a pair at a time (the first pair is the warm-up)
                raw.send(job(f"s{rnd}", seed=rnd, steps=2))
                raw.send(job(f"x{rnd}", seed=rnd, steps=2, model="tiny-sdxl"))
                for ev in collect(raw, {f"s{rnd}", f"x{rnd}"}):
                    assert ev["type"] != "error", ev
                    if ev["type"] == "started":
                        placed["tiny-sd15" if ev["id"].startswith("s") else "tiny-sdxl"].add(ev["worker"])
        finally:
            raw.close()
    assert [w.models.cache.loads for w in workers] == [1, 1]  # one load each, at warm-up; none after
    assert len(placed["tiny-sd15"]) == len(placed["tiny-sdxl"]) == 1 and placed["tiny-sd15"] != placed["tiny-sdxl"]


def test_cancel_fetch_and_partial_tiles_on_a_pool(pool) -> None:  # noqa: ANN001
    raw, other = Raw(pool.url, client_id="pool-tests"), Raw(pool.url, client_id="pool-tests")  # fetch: same client
    try:
        raw.send(job("long", seed=3, steps=150))
        raw.send(job("short", seed=4, steps=3))
        img = photo("astronaut", 64, 48)
        up = {"model": "tiny-sd15", "seed": 4, "steps": 4, "scale": 2, "result_format": "rgba8"}
        raw.send({"type": "job", "id": "up", "kind": "upscale", "params": up, "images": {"image": rgba8(img)}})
        events: list[dict[str, Any]] = []
        while not any(e["type"] == "progress" and e["id"] == "long" for e in events):
            events.append(raw.recv(120))
        raw.send({"type": "cancel", "id": "long"})
        events += collect(raw, {"long", "short", "up"})
        other.send({"type": "fetch", "id": "short"})  # another connection gets the retained result
        fetched = other.recv(60)
    finally:
        raw.close()
        other.close()
    ends = {e["id"]: e for e in events if e["type"] in TERMINAL}
    assert ends["long"]["type"] == "cancelled"
    assert max(e["step"] for e in events if e["type"] == "progress" and e["id"] == "long") < 150
    assert ends["short"]["type"] == ends["up"]["type"] == "result"
    assert fetched == ends["short"]
    partials = [e["image"] for e in events if e["type"] == "partial" and e["id"] == "up"]
    canvas = ends["up"]["canvas"]
    cover = np.zeros((canvas["h"], canvas["w"]), np.int32)
    for r in partials:
        cover[r["y"] : r["y"] + r["h"], r["x"] : r["x"] + r["w"]] += 1
    assert partials and (cover == 1).all()  # the partial tiles cover the canvas exactly once


def test_welcome_and_status_list_the_workers(pool) -> None:  # noqa: ANN001
    raw = Raw(pool.url)
    try:
        assert raw.welcome is not None
        workers = raw.welcome["workers"]
        raw.send({"type": "status"})
        status = raw.recv(30)
    finally:
        raw.close()
    assert [w["id"] for w in workers] == ["local:0", "local:1"]
    assert all(w["device"] == "cpu" and w["state"] == "idle" and w["job"] is None for w in workers)
    assert {m for w in workers for m in w["resident"]} == {"tiny-sd15"}  # after the tests above
    assert status["type"] == "status" and status["queued"] == 0
    assert [w["id"] for w in status["workers"]] == ["local:0", "local:1"]
    assert raw.welcome["device"] == "cpu"


def test_single_device_server_has_one_worker_on_its_own_models(server) -> None:  # noqa: ANN001
    (worker,) = server.server.pool.workers
    assert worker.models is server.server.models  # nothing loaded twice, exactly the one-GPU server
    raw = Raw(server.url)
    try:
        assert [w["id"] for w in raw.welcome["workers"]] == ["local:0"]
    finally:
        raw.close()


def serve_error(*args: str, block_ray: bool = False) -> subprocess.CompletedProcess[str]:
    code = "import sys\nif %r: sys.modules['ray'] = None\nfrom server.cli import main\nsys.exit(main(%r))"
    return subprocess.run(
        [sys.executable, "-c", code % (block_ray, ["serve", *args])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_bad_devices_and_ray_without_ray(tmp_path: Path) -> None:
    bad = serve_error("--models", str(tmp_path), "--devices", "cuda:7")
    assert bad.returncode == 2 and "cuda:7 is not visible" in bad.stderr
    bad = serve_error("--models", str(tmp_path), "--devices", "tpu")
    assert bad.returncode == 2 and "--devices" in bad.stderr
    no_ray = serve_error("--models", str(tmp_path), "--ray", "auto", block_ray=True)  # as if Ray were not installed
    assert no_ray.returncode == 2 and INSTALL_HINT in no_ray.stderr


def test_serve_devices_runs_one_worker_per_device(models_dir: Path, tmp_path: Path) -> None:
    with start_serve(models_dir, tmp_path / "serve.log", "--devices", "cpu,cpu") as srv:
        events = run_jobs(srv.url, [job("a", seed=1, steps=2), job("b", seed=2, steps=2)])
        workers = status(srv.url)["workers"]
        listed = subprocess.run(
            [*SDBRIDGE, "models", "--url", srv.url], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    assert [w["id"] for w in workers] == ["local:0", "local:1"]
    assert listed.returncode == 0, listed.stderr
    assert "worker local:0 on " in listed.stdout and "worker local:1 on " in listed.stdout
    assert "cpu, idle; tiny-sd15" in listed.stdout
    assert sorted(e["type"] for e in events if e["type"] in TERMINAL) == ["result", "result"]
    assert len({e["worker"] for e in events if e["type"] == "started"}) == 2
