"""The one way tests start a real server: in-process on a thread (`in_process`), or as a
`sdbridge serve` subprocess (`start_serve`). Both listen on a loopback port and are stopped by
the test that started them (the subprocess by its own pid, never by name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.embedded import RunningServer, start_server
from server.limits import Limits
from server.pipelines.fastpath import FastOptions

ROOT = Path(__file__).resolve().parents[1]
SDBRIDGE = [sys.executable, "-m", "server.cli"]


def served(name: str, tree: str, doc: str) -> Any:
    """A session fixture `name`: the in-process server (`in_process`, defaults) over the models tree that
    fixture `tree` writes."""
    import pytest

    def serve(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
        with in_process(request.getfixturevalue(tree)) as running:
            yield running

    serve.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(serve)


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def in_process(
    models: Path | None,
    limits: Limits | None = None,
    token: str | None = None,
    fast: FastOptions | None = None,
    state_dir: Path | None = None,
    allow_origins: tuple[str, ...] = (),
    model_budgets: tuple[int | None, int | None] = (None, None),
    **workers: Any,
) -> Iterator[RunningServer]:
    """A real `Server` in this process on a free port, closed on exit (fixtures `yield` from this).

    Its jobs are journaled in `state_dir`, by default a temporary folder of its own (never the
    user's cache dir), removed afterwards. `workers`: `devices=[…]` (one local worker each) or `pool=`
    (e.g. a Ray cluster's workers)."""
    with tempfile.TemporaryDirectory(prefix="sdbridge-state-") as tmp:
        running = start_server(
            models,
            limits,
            token=token,
            fast=fast,
            state_dir=state_dir or Path(tmp),
            allow_origins=allow_origins,
            model_budgets=model_budgets,
            **workers,
        )
        try:
            yield running
        finally:
            running.close()


@dataclass
class ServeProcess:
    """A `sdbridge serve` child of this test process."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        """End our own child, by its pid: SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    """Return once something accepts connections on `port`; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sdbridge serve exited with {proc.returncode}:\n{_log_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    proc.kill()
    proc.wait(10)
    raise TimeoutError(f"sdbridge serve did not listen on {port}:\n{_log_tail(log)}")


def start_serve(
    models: Path | None,
    log: Path,
    *extra: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> ServeProcess:
    """`sdbridge serve --models MODELS --port PORT EXTRA…` (no --models: the demo model), output
    appended to `log`; returns once it listens. Jobs are journaled beside the log (`<log stem>-state`)
    unless EXTRA names a --state-dir: a server started again with the same log finds its jobs."""
    port = port or free_port()
    args = ["serve", *(["--models", str(models)] if models is not None else []), "--port", str(port), *extra]
    if "--state-dir" not in extra:
        args += ["--state-dir", str(log.with_name(f"{log.stem}-state"))]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env or {})}
    with log.open("ab") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([*SDBRIDGE, *args], cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    wait_listening(port, proc, log)
    return ServeProcess(proc, port, log)
