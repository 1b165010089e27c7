"""Run a real server on a free loopback port in a background thread (tests, benchmarks, embedding)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .app import Server
from .limits import Limits
from .models.registry import ModelManager
from .pipelines.fastpath import FastOptions, preparer, release
from .workers.build import local_pool
from .workers.config import WorkerConfig
from .workers.pool import WorkerPool


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


def start_server(
    models: Path | None,
    limits: Limits | None = None,
    token: str | None = None,
    host: str = "127.0.0.1",
    device: torch.device | None = None,
    fast: FastOptions | None = None,
    state_dir: Path | None = None,
    allow_origins: tuple[str, ...] = (),
    model_budgets: tuple[int | None, int | None] = (None, None),
    devices: list[torch.device] | None = None,
    pool: WorkerPool | None = None,
) -> RunningServer:
    """A real `Server` on a free port, in a thread with its own event loop; returns once listening.

    `fast`: the UNet fast path (`sdbridge serve --fast`); None runs the UNet eager.
    `state_dir`: where jobs are journaled (None: not at all, they live as long as the server).
    `model_budgets`: bytes for models on the device and in the RAM tier (`--vram-budget`, `--ram-cache-gb`).
    `devices`: one local worker per device (`serve --devices`); `pool`: any other workers (a Ray cluster's)."""
    dev = device or torch.device("cpu")
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    manager = ModelManager(
        models,
        dev,
        dtype,
        vram_budget=model_budgets[0],
        ram_budget=model_budgets[1],
        on_load=preparer(fast) if fast is not None else None,
        on_release=release,
    )
    limits = limits or Limits()
    if pool is None and devices is not None:
        pool = local_pool(manager, WorkerConfig(models, fast=fast), devices, limits)
    server = Server(manager, limits, token=token, state_dir=state_dir, allow_origins=allow_origins, pool=pool)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def main() -> None:
        async def go() -> None:
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = stop = asyncio.Event()
            started = asyncio.Event()
            task = asyncio.create_task(server.run(host, 0, ready=started, stop=stop))
            listening = asyncio.create_task(started.wait())
            await asyncio.wait([task, listening], return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if task.done():  # it failed to start (StartupError…): raised to the caller below
                await task
            ready.set()
            await task

        try:
            asyncio.run(go())
        except BaseException as exc:  # surfaced to the caller through box
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, daemon=True, name="sdbridge-embedded")
    thread.start()
    ready.wait(60)
    if "error" in box:
        raise box["error"]
    return RunningServer(server, f"ws://127.0.0.1:{server.bound_port}", box["loop"], box["stop"], thread)
