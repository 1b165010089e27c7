"""A worker in this process: one device and its own model manager; the queue's thread for it runs the
job directly (exactly what the single-GPU server always did)."""

from __future__ import annotations

import os
import socket
import threading

from ..limits import Limits
from ..models.registry import ModelManager
from .base import Emit, Event, JobSpec, WorkerInfo
from .config import device_name, resident_names
from .runner import run_job


class LocalWorker:
    def __init__(self, models: ModelManager, limits: Limits, index: int = 0) -> None:
        self.models = models
        self.limits = limits
        self.info = WorkerInfo(
            id=f"local:{index}", host=socket.gethostname(), device=device_name(models.device), pid=os.getpid()
        )

    def execute(self, spec: JobSpec, emit: Emit, cancel: threading.Event) -> Event:
        try:
            return run_job(spec, self.models, self.limits, emit, cancel.is_set)
        finally:
            self.refresh()

    def cancel(self, job_id: str) -> None:
        """Nothing to forward: the job polls the queue's own flag between steps."""

    def is_resident(self, model: str) -> bool:
        return self.models.is_resident(model)

    def refresh(self) -> None:
        self.info.resident = resident_names(self.models)

    def close(self) -> None:
        """Nothing to release: the models go with the process (the server may be embedded and restarted)."""
