"""Scale-out benchmark: jobs per minute with 1 and 2 local workers, and what the Ray path adds per job.

1. Throughput: `--jobs` generate jobs (tiny SD1.5, `--size` px square, `--steps` steps, distinct seeds) submitted at
   once through the real server, with one local CPU worker and with two (`serve --devices cpu,cpu`);
   each worker warmed up (model loaded) first. Jobs/minute from the wall time of the whole batch.
2. Gateway overhead: the same 1-step job run one after the other (`--runs` times), through a local
   worker and through a Ray worker on a local two-node cluster (head + a node with one fake GPU, in a
   private network namespace: this script re-runs that part of itself under `unshare`, root needed).
   Median wall time per job, submit to result; the difference is what the Ray path costs per job
   (object store in and out, the event stream, the actor call).

    python bench/scale.py [--jobs 8] [--steps 10] [--size 64] [--runs 15] [--threads 1] [--skip-ray]

Prints the load average: the machine may be shared, rerun when it is high. `--threads` torch threads
per worker process (the same for every variant, so results are comparable and equal).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.client import Client  # noqa: E402
from server.embedded import start_server  # noqa: E402
from server.limits import Limits  # noqa: E402
from server.models.testmodels import write_sd_checkpoint  # noqa: E402
from server.workers.cluster import RayWorkers  # noqa: E402
from server.workers.config import WorkerConfig  # noqa: E402
from server.workers.pool import DRAIN_AFTER, WorkerPool  # noqa: E402

CPU = torch.device("cpu")
PARAMS = {"prompt": "a lighthouse", "model": "tiny-sd15", "width": 64, "height": 64}


def load_avg() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


async def batch(url: str, n: int, steps: int, seed0: int, size: int) -> float:
    """Submit `n` jobs at once; → seconds until the last result."""
    params = PARAMS | {"steps": steps, "width": size, "height": size}
    async with await Client.connect(url) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(c.run("generate", params | {"seed": seed0 + i}) for i in range(n)))
        return time.perf_counter() - t0


async def sequential(url: str, runs: int) -> list[float]:
    times = []
    async with await Client.connect(url) as c:
        for i in range(runs):
            t0 = time.perf_counter()
            await c.run("generate", PARAMS | {"steps": 1, "seed": i})
            times.append(time.perf_counter() - t0)
    return times


def throughput(models: Path, workers: int, jobs: int, steps: int, size: int) -> float:
    running = start_server(models, devices=[CPU] * workers) if workers > 1 else start_server(models)
    try:
        asyncio.run(batch(running.url, 2 * workers, 1, 10_000, size))  # warm-up: every worker loads the model
        return jobs * 60 / asyncio.run(batch(running.url, jobs, steps, 0, size))
    finally:
        running.close()


def overhead_local(models: Path, runs: int) -> list[float]:
    running = start_server(models)
    try:
        asyncio.run(sequential(running.url, 2))
        return asyncio.run(sequential(running.url, runs))
    finally:
        running.close()


def overhead_ray(models: Path, runs: int, threads: int) -> list[float]:
    from server.workers import cluster
    from tests.raycluster import local_cluster

    with local_cluster(gpus=1, gpu_node_cpus=1) as running_cluster:
        cluster.connect(running_cluster.address)
        pool = WorkerPool([], ray=RayWorkers(WorkerConfig(models, threads=threads), Limits(), DRAIN_AFTER))
        running = start_server(models, pool=pool)
        try:
            deadline = time.monotonic() + 300
            while not any(w["state"] == "idle" for w in running.server.pool.describe()):
                assert time.monotonic() < deadline, "the Ray worker did not start"
                time.sleep(0.5)
            asyncio.run(sequential(running.url, 2))
            return asyncio.run(sequential(running.url, runs))
        finally:
            running.close()
            cluster.disconnect()


def ray_part(models: Path, args: argparse.Namespace) -> None:
    """Both sides of the overhead comparison, in this (private-network) process."""
    local = overhead_local(models, args.runs)
    ray = overhead_ray(models, args.runs, args.threads)
    ml, mr = statistics.median(local), statistics.median(ray)
    print(f"1-step job, sequential, {args.runs} runs ({load_avg()}):")
    print(f"  local worker  median {ml * 1000:7.1f} ms  (min {min(local) * 1000:.1f})")
    print(f"  Ray worker    median {mr * 1000:7.1f} ms  (min {min(ray) * 1000:.1f})")
    print(f"  Ray path adds {(mr - ml) * 1000:.1f} ms per job (median), {(min(ray) - min(local)) * 1000:.1f} ms (min)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--size", type=int, default=64, help="image width and height (px, multiple of 8)")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-ray", action="store_true")
    p.add_argument("--ray-only", type=Path, help=argparse.SUPPRESS)  # the re-run inside `unshare`
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.ray_only is not None:
        ray_part(args.ray_only, args)
        return
    with tempfile.TemporaryDirectory(prefix="sdb-scale-") as tmp:
        models = Path(tmp)
        write_sd_checkpoint(models, "sd15")
        print(
            f"throughput: {args.jobs} jobs of {args.steps} steps, {args.size}x{args.size}, "
            f"{args.threads} torch thread(s) per worker"
        )
        for workers in (1, 2):
            rate = throughput(models, workers, args.jobs, args.steps, args.size)
            print(f"  {workers} worker(s): {rate:6.1f} jobs/min  ({load_avg()})")
        if args.skip_ray:
            return
        inner = [sys.executable, str(Path(__file__).resolve()), "--ray-only", str(models)]
        inner += ["--runs", str(args.runs), "--threads", str(args.threads)]
        cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
        cmd += ["sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner]
        subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)


if __name__ == "__main__":
    main()
