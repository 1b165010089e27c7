"""One local Ray cluster for the whole session (a head and a node with two fake GPUs, ~10 s to start), and
the gateway side joined to it. These tests run only inside the private network namespace that
`tests/server/workers/test_cluster_suite.py` makes (tests/conftest.py skips collecting them elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from server.workers import cluster
from tests.raycluster import LocalRayCluster, local_cluster

GPUS = 2


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalRayCluster]:
    with local_cluster(gpus=GPUS) as running:
        cluster.connect(running.address)
        try:
            yield running
        finally:
            cluster.disconnect()
