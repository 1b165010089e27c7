"""The Ray worker actor seen from the gateway (no websocket yet): placement, results, cancel, a killed pid."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from server.jobs import KINDS
from server.jobs.base import ParseContext, parse_request
from server.limits import Limits
from server.models.registry import ModelManager
from server.protocol import Fields
from server.workers.base import JobSpec, WorkerLost
from server.workers.cluster import RayWorkers
from server.workers.config import WorkerConfig
from server.workers.remote import RemoteWorker
from server.workers.runner import run_job

PARAMS = {"prompt": "a cat", "model": "tiny-sd15", "steps": 4, "width": 64, "height": 64, "seed": 7}


def spec(models: ModelManager, job_id: str, **params: object) -> JobSpec:
    ctx = ParseContext(models, Limits(), job_id, lambda _n, _r: None)  # type: ignore[arg-type, return-value]
    request = parse_request(KINDS["generate"], Fields(PARAMS | params, "params", job_id), {}, ctx)
    return JobSpec(job_id, "generate", request, ("webp",))


@pytest.fixture(scope="module")
def gateway_models(models_dir: Path) -> ModelManager:
    return ModelManager(models_dir, torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def workers(ray_cluster, models_dir: Path) -> Iterator[list[RemoteWorker]]:  # noqa: ANN001
    # The actors compute with this process's thread count: CPU results depend on it.
    pool = RayWorkers(WorkerConfig(models_dir, threads=torch.get_num_threads()), Limits(), drain_after=2)
    made = pool.spawn()
    try:
        for w in made:
            w.wait_ready()
        yield made
    finally:
        for w in made:  # the GPU slots are free for the next module's workers
            w.close()


def test_one_worker_per_gpu_each_in_its_own_process_on_the_gpu_node(workers) -> None:  # noqa: ANN001
    import ray

    head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"])
    assert len(workers) == 2
    assert len({w.info.pid for w in workers}) == 2
    assert all(w.slot[0] != head for w in workers)
    assert all("GPU slot" in w.info.device for w in workers)


def test_a_remote_result_equals_the_local_one(workers, gateway_models) -> None:  # noqa: ANN001
    events: list[dict] = []
    remote = workers[0].execute(spec(gateway_models, "r1"), events.append, threading.Event())
    local = run_job(spec(gateway_models, "r1"), gateway_models, Limits(), lambda _e: None, lambda: False)
    assert remote["type"] == "result", remote
    assert [i["data"] for i in remote["images"]] == [i["data"] for i in local["images"]]
    assert [e["step"] for e in events if e["type"] == "progress"] == [1, 2, 3, 4]
    assert workers[0].is_resident("tiny-sd15")


def test_cancel_reaches_the_running_job(workers, gateway_models) -> None:  # noqa: ANN001
    w = workers[1]
    seen: list[int] = []

    def emit(ev: dict) -> None:
        if ev["type"] == "progress":
            seen.append(ev["step"])
            if ev["step"] == 2:
                w.cancel("c1")

    end = w.execute(spec(gateway_models, "c1", steps=150), emit, threading.Event())
    assert end == {"type": "cancelled", "id": "c1"}
    assert 2 <= max(seen) < 150


def test_a_killed_worker_process_is_reported_as_lost(workers, gateway_models) -> None:  # noqa: ANN001
    w = workers[1]

    def emit(ev: dict) -> None:
        if ev["type"] == "progress" and ev["step"] == 2:
            os.kill(w.info.pid, signal.SIGKILL)  # a process our cluster started, by its pid

    with pytest.raises(WorkerLost):
        w.execute(spec(gateway_models, "k1", steps=150), emit, threading.Event())
    assert not w.alive(timeout=5)
