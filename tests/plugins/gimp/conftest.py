"""Fixtures of the real-GIMP tests: the chroot check, the session's server (model warm), the built
plug-in installed into the chroot's GIMP profiles, and a private Xvfb for GUI GIMP."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gimp_harness as harness
import pytest

from plugins.gimp import build as gimp_build
from tests.servers import ServeProcess


def _welcome(url: str) -> dict[str, Any]:
    from websockets.sync.client import connect

    from server import protocol

    with connect(url, open_timeout=5, max_size=None) as ws:
        ws.send(protocol.pack(protocol.hello("gimp-test")))
        return protocol.unpack(ws.recv(timeout=10), 1 << 30)


def _warm_up(url: str) -> None:
    """One 1-step job from the host so the model is loaded before GIMP's jobs are timed."""
    from plugins.common.jobs import GenerateRequest, Sampling
    from plugins.gimp.sdbridge_gimp.remote import Remote

    with Remote(url) as s:
        s.connect()
        job = s.submit(GenerateRequest(sampling=Sampling(prompt="warm up", steps=1, seed=1), width=64, height=64))
        s.wait_result(job, 300, lambda ev: None)


@pytest.fixture(scope="session")
def gimp_available() -> None:
    reason = harness.missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"real GIMP 3 is required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def sdbridge_serve(gimp_available: None, sdb_serve: ServeProcess) -> harness.Serve:
    """The session's real `sdbridge serve` (tiny random-weight SD1.5 + GFPGANv1.4), its welcome, model warm."""
    t0 = time.monotonic()
    welcome = _welcome(sdb_serve.url)
    _warm_up(sdb_serve.url)
    print(f"\nsdbridge serve: model warm in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return harness.Serve(sdb_serve.url, welcome)


@pytest.fixture(scope="session")
def gimp_plugin(gimp_available: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in built from this checkout and installed into both chroot profiles."""
    built = gimp_build.build(tmp_path_factory.mktemp("gimp-build"), archive=False)
    harness.install_plugin(built)
    return built


@pytest.fixture(scope="session")
def xvfb_display(gimp_available: None) -> Iterator[str]:
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is required in CI for the GIMP dialog test (tests/hosts/krita_setup.sh installs it)")
        pytest.skip("Xvfb not installed")
    with harness.xvfb() as display:
        yield display
