"""Shared fixtures: tiny models written by our generator, and the session's real servers on loopback
ports (started through `tests/servers.py`, the one way tests start servers)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from server.client import Client
from server.embedded import RunningServer
from server.models.testmodels import ARCHS, write_sd_checkpoint
from tests.raycluster import in_private_netns
from tests.servers import ServeProcess, in_process, served, start_serve

torch.set_num_threads(2)
CLUSTER_TESTS = Path(__file__).parent / "server" / "workers" / "cluster"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The Ray cluster tests run only in a private network namespace, where `test_cluster_suite.py` starts
    them (Ray would otherwise use the machine's network address instead of loopback)."""
    if collection_path == CLUSTER_TESTS and not in_private_netns():
        return True
    return None


# Property tests never assert wall-clock time (no deadline). The suite's profile, "repro", is
# reproducible: the same examples on every run and machine (derandomized, no example database), each
# test's own max_examples or 100, so `./run.sh test` and CI can't flake on a new random example.
# To explore new examples locally: `pytest --hypothesis-profile=explore` (random, with a database).
settings.register_profile("explore", deadline=None, print_blob=True)
settings.register_profile("repro", deadline=None, derandomize=True, database=None, max_examples=100, print_blob=True)
settings.load_profile("repro")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for arch in ("sd15", "sdxl", "sd15-inpaint", "sdxl-refiner"):
        write_sd_checkpoint(root, arch)
    return root


server = served("server", "models_dir", "The in-process server over `models_dir` (no restorer, no token).")


@pytest.fixture(scope="session")
def restore_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """An in-process server whose models tree holds only a tiny GFPGAN (`tiny-gfpgan`)."""
    root = tmp_path_factory.mktemp("restorers")
    ARCHS["gfpgan"](root / "GFPGAN", None, 0)
    with in_process(root) as running:
        yield running


@pytest.fixture(scope="session")
def control_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny checkpoints (and an SDXL refiner) plus ControlNets (SD1.5 canny and scribble, SDXL canny),
    IP-Adapters (SD1.5, SDXL) and their CLIP vision encoder, each in the folder users keep them in."""
    root = tmp_path_factory.mktemp("controls")
    for arch in ("sd15", "sdxl", "sd15-inpaint", "sdxl-refiner"):
        ARCHS[arch](root / "Stable-diffusion", None, 0)
    ARCHS["controlnet-sd15"](root / "ControlNet", None, 0)
    ARCHS["controlnet-sd15"](root / "ControlNet", "tiny-control_v11p_sd15_scribble", 1)
    ARCHS["controlnet-sdxl"](root / "controlnet", None, 0)
    ARCHS["clip-vision"](root / "clip_vision", None, 0)
    ARCHS["ipadapter-sd15"](root / "ipadapter", None, 0)
    ARCHS["ipadapter-sdxl"](root / "IP-Adapter", None, 0)
    return root


control_server = served("control_server", "control_tree", "The in-process server over `control_tree`.")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the editor plug-ins are tested against: tiny SD1.5, a tiny GFPGAN under its released name and a
    tiny SD1.5 scribble ControlNet (for control layers)."""
    root = tmp_path_factory.mktemp("plugin-models")
    ARCHS["sd15"](root, None, 0)
    ARCHS["gfpgan"](root / "GFPGAN", "GFPGANv1.4", 0)
    ARCHS["controlnet-sd15"](root / "ControlNet", "control_v11p_sd15_scribble", 0)
    return root


@pytest.fixture(scope="session")
def sdb_serve(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One real `sdbridge serve` subprocess for the session (no token): plug-in client, Krita, GIMP."""
    with start_serve(tiny_models, tmp_path_factory.mktemp("serve") / "serve.log") as srv:
        yield srv


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def connect(url: str, **kw: Any) -> Client:
    return await Client.connect(url, **kw)
