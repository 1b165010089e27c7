"""The worker pools `sdbridge serve` can run: local workers, one per device (`--devices`), or workers on
a Ray cluster (`--ray`)."""

from __future__ import annotations

import torch

from ..limits import Limits
from ..models.registry import ModelManager
from .cluster import RayWorkers, connect
from .config import WorkerConfig
from .local import LocalWorker
from .pool import DRAIN_AFTER, WorkerPool


def parse_devices(text: str) -> list[torch.device]:
    """`cuda:0,cuda:1` / `cpu,cpu` → devices; ValueError naming what is wrong."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError("--devices needs at least one device, e.g. cuda:0,cuda:1 or cpu")
    devices = []
    for name in names:
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"--devices: {name!r} is not a device ({exc})") from None
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"--devices: {name!r}: only cpu and cuda devices are supported")
        if dev.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (dev.index or 0) >= count:
                raise ValueError(f"--devices: {name} is not visible ({count} CUDA device(s) here)")
        devices.append(dev)
    return devices


def local_pool(models: ModelManager, config: WorkerConfig, devices: list[torch.device], limits: Limits) -> WorkerPool:
    """One worker per device. A single worker on the server's own device uses the server's model manager:
    exactly the single-device server (no second manager, nothing loaded twice)."""
    if len(devices) == 1 and devices[0] == models.device:
        return WorkerPool([LocalWorker(models, limits)])
    return WorkerPool([LocalWorker(config.manager(dev), limits, i) for i, dev in enumerate(devices)])


def ray_pool(address: str, config: WorkerConfig, limits: Limits) -> WorkerPool:
    """Workers on the Ray cluster at `address` (`auto`: the one this host joined). Raises RayUnavailable."""
    connect(address)
    return WorkerPool([], ray=RayWorkers(config, limits, DRAIN_AFTER))
