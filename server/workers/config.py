"""How a worker builds its own model manager on its device: the same options for every worker, whether it
runs in this process or in a Ray actor on another host (so this travels pickled to the actors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.registry import ModelManager
from ..pipelines.fastpath import FastOptions, preparer, release


@dataclass(frozen=True)
class WorkerConfig:
    models: Path | None  # the models folder; on a cluster every GPU host has it at this same path
    fp32: bool = False  # full precision on CUDA (the CPU is always fp32)
    allow_pickle: bool = False
    fast: FastOptions | None = None  # None: the UNet runs eager
    vram_budget: int | None = None  # bytes per worker (None: automatic, see models.memory)
    ram_budget: int | None = None
    # CPU threads of a worker process (None: Ray's default, its num_cpus). CPU results depend on the
    # thread count, so tests that compare a cluster's results with local ones set the local count.
    threads: int | None = None

    def dtype(self, device: torch.device) -> torch.dtype:
        return torch.float16 if device.type == "cuda" and not self.fp32 else torch.float32

    def manager(self, device: torch.device) -> ModelManager:
        """A model manager of its own for one worker's device (its own resident models and caches)."""
        return ModelManager(
            self.models,
            device,
            self.dtype(device),
            allow_pickle=self.allow_pickle,
            vram_budget=self.vram_budget,
            ram_budget=self.ram_budget,
            on_load=preparer(self.fast) if self.fast is not None else None,
            on_release=release,
        )


def device_name(device: torch.device) -> str:
    """`cuda:1 NVIDIA H200`, or `cpu`."""
    if device.type == "cuda":
        return f"{device} {torch.cuda.get_device_properties(device).name}"
    return str(device)


def visible_devices() -> list[torch.device]:
    """Every visible GPU, or the CPU when there is none (the default of `serve --devices`)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 1:
        return [torch.device("cuda")]  # exactly what a single-GPU server always used
    if count > 1:
        return [torch.device(f"cuda:{i}") for i in range(count)]
    return [torch.device("cpu")]


def resident_names(models: ModelManager) -> list[str]:
    """The checkpoints a worker has on its device now (a job on one of them starts without a load)."""
    return [r["name"] for r in models.resident() if not r.get("refiner") and models.is_resident(r["name"])]
