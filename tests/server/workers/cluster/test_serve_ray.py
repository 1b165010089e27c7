"""`sdbridge serve --ray ADDRESS` as a real subprocess (a Ray driver of the test's cluster): its workers
start on the GPU node, jobs run there, and ending the server by its pid ends its workers too."""

from __future__ import annotations

import time
from pathlib import Path

from tests.processes import descendants
from tests.raycluster import LocalRayCluster
from tests.server.workers.streams import TERMINAL, job, run_jobs, status
from tests.servers import start_serve

READY_S = 180


def test_serve_ray_runs_jobs_on_the_cluster(ray_cluster: LocalRayCluster, models_dir: Path, tmp_path: Path) -> None:
    with start_serve(models_dir, tmp_path / "serve.log", "--ray", ray_cluster.address) as srv:
        deadline = time.monotonic() + READY_S
        while len([w for w in status(srv.url)["workers"] if w["state"] == "idle"]) < 2:
            assert time.monotonic() < deadline, srv.log.read_text()[-3000:]
            time.sleep(0.5)
        workers = status(srv.url)["workers"]
        events = run_jobs(srv.url, [job("a", seed=1, steps=3), job("b", seed=2, steps=3)])
        pids = {w["pid"] for w in workers}
    assert all(w["id"].startswith("ray:") and "GPU slot" in w["device"] for w in workers)
    assert sorted(e["type"] for e in events if e["type"] in TERMINAL) == ["result", "result"]
    assert {e["worker"] for e in events if e["type"] == "started"} == {w["id"] for w in workers}
    # The actors belonged to the server (their driver): they end with it, freeing the GPU slots.
    deadline = time.monotonic() + 60
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = pids & {pid for proc in ray_cluster.procs for pid in descendants(proc.pid)}
        time.sleep(0.5)
    assert not alive, f"worker processes outlived the server: {alive}"
