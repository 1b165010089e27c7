"""Fixtures for the plugin client tests: a real `sdbridge serve` subprocess with a tiny model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugin_serve import ROOT, ServeProcess, start_serve


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin-models")
    subprocess.run(
        [sys.executable, "-m", "server.cli", "make-test-model", str(root), "--arch", "sd15"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return root


@pytest.fixture(scope="session")
def sdb_serve(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """One real `sdbridge serve` for the session (no token)."""
    srv = start_serve(tiny_models, tmp_path_factory.mktemp("serve") / "serve.log")
    yield srv
    srv.stop()
