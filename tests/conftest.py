"""Shared fixtures: tiny checkpoints written by our generator, and a real server on a loopback port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from server.client import Client
from server.embedded import RunningServer, start_server
from server.models.testmodels import write_sd_checkpoint

torch.set_num_threads(2)

# Property tests never assert wall-clock time (no deadline). "ci" is reproducible: the same examples
# on every run and machine (derandomized, no example database), each test's own max_examples or
# 100. Selected when $CI is set (.ci/run sets it); locally: `pytest --hypothesis-profile=ci`.
settings.register_profile("dev", deadline=None, print_blob=True)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, max_examples=100, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for arch in ("sd15", "sdxl", "sd15-inpaint"):
        write_sd_checkpoint(root, arch)
    return root


@pytest.fixture(scope="session")
def server(models_dir: Path) -> Iterator[RunningServer]:
    running = start_server(models_dir)
    yield running
    running.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def connect(url: str, **kw: Any) -> Client:
    return await Client.connect(url, **kw)
