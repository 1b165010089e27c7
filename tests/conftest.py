"""Shared fixtures: tiny checkpoints written by our generator, and a real server on a loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from server.app import Server
from server.client import Client
from server.limits import Limits
from server.models.registry import ModelManager
from server.models.testmodels import write_sd_checkpoint

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for arch in ("sd15", "sdxl", "sd15-inpaint"):
        write_sd_checkpoint(root, arch)
    return root


@dataclass
class RunningServer:
    server: Server
    url: str
    loop: asyncio.AbstractEventLoop
    stop: asyncio.Event
    thread: threading.Thread

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)


def start_server(models: Path | None, limits: Limits | None = None, token: str | None = None,
                 host: str = "127.0.0.1") -> RunningServer:
    """A real `Server` on a free port, in a thread with its own event loop."""
    manager = ModelManager(models, torch.device("cpu"), torch.float32)
    server = Server(manager, limits or Limits(), token=token)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        async def go() -> None:
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = stop = asyncio.Event()
            started = asyncio.Event()
            task = asyncio.create_task(server.run(host, 0, ready=started, stop=stop))
            await started.wait()
            ready.set()
            await task

        try:
            asyncio.run(go())
        except BaseException as exc:  # surfaced to the test through box
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(60)
    if "error" in box:
        raise box["error"]
    return RunningServer(server, f"ws://127.0.0.1:{server.bound_port}", box["loop"], box["stop"], thread)


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[RunningServer]:
    running = start_server(models_dir)
    yield running
    running.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def connect(url: str, **kw: Any) -> Client:
    return await Client.connect(url, **kw)
