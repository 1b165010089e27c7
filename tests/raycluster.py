"""A local Ray cluster for tests: a head node and a GPU node as `ray start --block` children of the test
process, on 127.0.0.1, stopped by their own pids.

Ray maps 127.0.0.1 to the host's "reachable" address, so these tests run in a private network namespace
where loopback is the only interface (`in_private_netns`; `tests/server/workers/test_cluster_suite.py`
starts them there with `unshare`). The GPU node declares fake GPUs (`--num-gpus`), so the workers'
`num_gpus=1` scheduling is exercised on a CPU-only machine: each worker gets its own
`CUDA_VISIBLE_DEVICES` slot and, finding no CUDA, runs on the CPU.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import descendants, kill_tree
from tests.servers import ROOT, free_port

RAY = Path(sys.executable).with_name("ray")
OBJECT_STORE_BYTES = 150 << 20  # per node; Ray's default (30 % of RAM) is far more than tiny models need
START_TIMEOUT_S = 90.0


def in_private_netns() -> bool:
    """True when loopback is this process's only network interface (so nothing can leave the machine)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return [ln.split(":")[0].strip() for ln in lines] == ["lo"]


def cluster_env(token: str) -> dict[str, str]:
    """What every node and the driver share: the auth token, no usage reporting, this checkout's code."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(ROOT),  # worker processes import `server` from this checkout
        "OMP_NUM_THREADS": "1",
    }


@dataclass
class LocalRayCluster:
    address: str
    env: dict[str, str]
    temp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log(self, name: str) -> str:
        path = self.temp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> list[int]:
        """SIGTERM our `ray start` children (each drains its node), SIGKILL what lingers.
        → pids still alive below us afterwards (none expected)."""
        for proc in reversed(self.procs):  # GPU nodes first, the head last
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait(10)
        left = [pid for proc in self.procs for pid in descendants(proc.pid)]
        shutil.rmtree(self.temp, ignore_errors=True)
        return left


def _node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", f"--object-store-memory={OBJECT_STORE_BYTES}"]
            + args,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


def _wait_port(port: int, cluster: LocalRayCluster, deadline: float) -> None:
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cluster.procs):
            raise RuntimeError(f"a ray node exited early:\n{cluster.log('head')}\n{cluster.log('gpus')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the ray head did not listen on {port}:\n{cluster.log('head')}")


def _wait_gpus(cluster: LocalRayCluster, gpus: int, deadline: float) -> None:
    """Connect as a driver until the cluster reports every GPU, then disconnect (the server connects itself)."""
    import ray

    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    try:
        while ray.cluster_resources().get("GPU", 0) < gpus:
            if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs):
                raise TimeoutError(f"the GPU node did not join:\n{cluster.log('gpus')}")
            time.sleep(0.2)
    finally:
        ray.shutdown()


@contextmanager
def local_cluster(gpus: int = 2, gpu_node_cpus: int = 2) -> Iterator[LocalRayCluster]:
    """Head (no GPU: the gateway's side) + one node with `gpus` fake GPUs; the driver env is set in
    `os.environ` while it runs (Ray reads the token from there)."""
    if not in_private_netns():
        raise RuntimeError("Ray cluster tests run only in a private network namespace (see tests/raycluster.py)")
    token = secrets.token_hex(32)
    env = cluster_env(token)
    # A short path: Ray's unix sockets live under it and their paths are limited to 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="sdbray-", dir="/tmp"))
    port = free_port()
    cluster = LocalRayCluster(f"127.0.0.1:{port}", env, temp)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        cluster.procs.append(
            _node(
                [
                    "--head",
                    f"--port={port}",
                    "--num-cpus=1",
                    "--num-gpus=0",
                    "--include-dashboard=false",
                    f"--temp-dir={temp}",
                    "--disable-usage-stats",
                ],  # fmt: skip
                env,
                temp / "head.log",
            )
        )
        _wait_port(port, cluster, deadline)
        cluster.procs.append(
            _node(
                [f"--address={cluster.address}", f"--num-cpus={gpu_node_cpus}", f"--num-gpus={gpus}"],
                env,
                temp / "gpus.log",
            )
        )
        _wait_gpus(cluster, gpus, deadline)
        yield cluster
    finally:
        left = cluster.stop()
        for pid in left:
            kill_tree(pid)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert not left, f"ray processes outlived their nodes: {left}"
