"""`serve --ray` end to end: the websocket gateway in this process, its workers Ray actors on the local
cluster's GPU node. Jobs and their events through the gateway, cancel across the cluster, a worker
process killed by its pid mid-job (one result, from the other worker), and a GPU slot whose workers
keep dying drained."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from server.embedded import RunningServer
from server.limits import Limits
from server.workers.cluster import RayWorkers
from server.workers.config import WorkerConfig
from server.workers.pool import DRAIN_AFTER, WATCH_S, WorkerPool
from tests.server.workers.streams import TERMINAL, images, job, run_jobs, status
from tests.servers import in_process
from tests.wire import Raw

READY_S = 180  # two actors importing torch on a loaded 2-core machine


def wait_idle_workers(url: str, count: int, timeout: float = READY_S) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        workers = [w for w in status(url)["workers"] if w["state"] == "idle"]
        if len(workers) >= count:
            return workers
        assert time.monotonic() < deadline, f"no {count} idle workers within {timeout} s: {status(url)}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def gateway(ray_cluster, models_dir: Path) -> Iterator[RunningServer]:  # noqa: ANN001
    config = WorkerConfig(models_dir, threads=torch.get_num_threads())  # CPU results depend on the thread count
    pool = WorkerPool([], ray=RayWorkers(config, Limits(), DRAIN_AFTER))
    with in_process(models_dir, pool=pool) as running:
        wait_idle_workers(running.url, 2)
        yield running


@pytest.fixture(scope="module")
def local_results(server) -> dict[str, list[bytes]]:  # noqa: ANN001
    """What the single-worker server (this process, same thread count) makes for the same jobs."""
    frames = [job("a", seed=1, steps=6), job("b", seed=2, steps=6), job("k", seed=5, steps=40)]
    return images(run_jobs(server.url, frames))


def test_jobs_run_on_the_cluster_through_the_gateway(gateway, local_results) -> None:  # noqa: ANN001
    raw = Raw(gateway.url)
    welcome = raw.welcome
    raw.close()
    assert welcome is not None and len(welcome["workers"]) == 2
    assert all("GPU slot" in w["device"] and w["id"].startswith("ray:") for w in welcome["workers"])
    assert len({w["pid"] for w in welcome["workers"]} | {os.getpid()}) == 3  # two processes, not the gateway's
    events = run_jobs(gateway.url, [job("a", seed=1, steps=6), job("b", seed=2, steps=6)])
    started = {e["id"]: e["worker"] for e in events if e["type"] == "started"}
    assert started["a"] != started["b"]  # both GPUs used
    assert images(events) == {k: v for k, v in local_results.items() if k in "ab"}
    for j in "ab":
        steps = [e["step"] for e in events if e["type"] == "progress" and e["id"] == j]
        assert steps == list(range(1, 7))
        assert any("preview" in e for e in events if e["type"] == "progress" and e["id"] == j)
    resident = {m for w in status(gateway.url)["workers"] for m in w["resident"]}
    assert resident == {"tiny-sd15"}


def test_cancel_across_the_cluster(gateway) -> None:  # noqa: ANN001
    def cancel_at_first_step(raw: Raw, ev: dict[str, Any]) -> None:
        if ev["type"] == "progress" and ev["step"] == 1:
            raw.send({"type": "cancel", "id": "c"})

    events = run_jobs(gateway.url, [job("c", seed=3, steps=150)], cancel_at_first_step)
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["cancelled"]
    assert max(e["step"] for e in events if e["type"] == "progress") < 150
    wait_idle_workers(gateway.url, 2, timeout=30)  # the worker is free again


def kill_at_step(raw_url: str, step: int, victims: list[int]) -> Any:
    """An `on_event` that SIGKILLs the worker process running the job when it reports `step` (once)."""

    def on_event(raw: Raw, ev: dict[str, Any]) -> None:
        if ev["type"] == "started":
            on_event.worker = ev["worker"]  # type: ignore[attr-defined]
        if ev["type"] == "progress" and ev["step"] == step and not victims:
            workers = status(raw_url)["workers"]
            (pid,) = [w["pid"] for w in workers if w["id"] == on_event.worker]  # type: ignore[attr-defined]
            victims.append(pid)
            os.kill(pid, signal.SIGKILL)  # an actor process of the cluster this test started

    return on_event


def test_a_worker_killed_mid_job_still_yields_exactly_one_result(gateway, local_results) -> None:  # noqa: ANN001
    victims: list[int] = []
    events = run_jobs(gateway.url, [job("k", seed=5, steps=40)], kill_at_step(gateway.url, 3, victims))
    assert len(victims) == 1
    results = [e for e in events if e["type"] in TERMINAL]
    assert [e["type"] for e in results] == ["result"]  # one answer, no error
    assert images(events) == {"k": local_results["k"]}  # the re-run, same seed: the same image
    assert [e["type"] for e in events].count("started") == 1  # the re-run is the same job to the client
    # The pool replaces the lost worker on its GPU slot within a few cluster checks.
    workers = wait_idle_workers(gateway.url, 2, timeout=READY_S + WATCH_S)
    assert victims[0] not in {w["pid"] for w in workers}


def test_a_gpu_slot_whose_workers_keep_dying_is_drained(gateway) -> None:  # noqa: ANN001
    """The slot lost a job in the test above; losing the next one too drains it. Its job runs elsewhere."""
    before = {w["id"]: w for w in status(gateway.url)["workers"]}
    failing = next(w["id"] for w in before.values() if "tiny-sd15" not in w["resident"])  # the replacement
    victims: list[int] = []

    def kill_on_failing(raw: Raw, ev: dict[str, Any]) -> None:
        if ev["type"] == "started" and ev["worker"] == failing:
            kill_on_failing.job = ev["id"]  # type: ignore[attr-defined]
        if ev["type"] == "progress" and ev["id"] == getattr(kill_on_failing, "job", None) and not victims:
            victims.append(before[failing]["pid"])
            os.kill(before[failing]["pid"], signal.SIGKILL)

    events = run_jobs(gateway.url, [job("d1", seed=6, steps=30), job("d2", seed=7, steps=30)], kill_on_failing)
    assert victims, "no job ran on the replacement worker"
    assert sorted(e["id"] for e in events if e["type"] in TERMINAL) == ["d1", "d2"]
    assert all(e["type"] == "result" for e in events if e["type"] in TERMINAL)
    time.sleep(2 * WATCH_S)  # a drained slot gets no replacement
    workers = status(gateway.url)["workers"]
    assert [w["state"] for w in workers if w["id"] == failing] == ["drained"]
    assert len([w for w in workers if w["state"] == "idle"]) == 1
