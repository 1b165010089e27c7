"""The worker that runs in a Ray actor on a GPU host: its own model manager on the GPU Ray gave it,
jobs streamed back as they run (a generator: each event is an object in Ray's object store), cancel by
job id while a job runs (the actor has more than one thread for exactly that).

This module is imported inside the actor's process; it does not import Ray at the top, so the server
itself runs without it (`remote.py` wraps this class with `ray.remote`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from typing import Any

import torch

from .. import __version__
from ..limits import Limits
from ..results import failure_event
from .base import Event, JobSpec
from .config import WorkerConfig, device_name, resident_names
from .runner import run_job

log = logging.getLogger(__name__)
STATE = "_state"  # the item after a job's terminal event: the worker's state, for the gateway only


class WorkerActor:
    def __init__(self, config: WorkerConfig, limits: Limits) -> None:
        import ray

        if config.threads:
            torch.set_num_threads(config.threads)
        self.gpus = [str(g) for g in ray.get_gpu_ids()]
        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU: inside the actor it is always cuda:0.
        self.device = torch.device("cuda") if self.gpus and torch.cuda.is_available() else torch.device("cpu")
        self.node = ray.get_runtime_context().get_node_id()
        self.models = config.manager(self.device)
        self.limits = limits
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._job: str | None = None

    def info(self) -> dict[str, Any]:
        name = device_name(self.device)
        if self.device.type != "cuda" and self.gpus:
            name += f" (GPU slot {','.join(self.gpus)}, no CUDA here)"
        return {
            "host": socket.gethostname(),
            "node": self.node,
            "pid": os.getpid(),
            "device": name,
            "resident": resident_names(self.models),
            "job": self._job,
            "version": __version__,
        }

    def cancel(self, job_id: str) -> None:
        """Stop `job_id` at its next step; a cancel that arrives before the job starts is kept for it."""
        with self._lock:
            self._flags.setdefault(job_id, threading.Event()).set()

    def run(self, spec: JobSpec) -> Iterator[Event]:
        """The job's events as it runs, its terminal event, then one `_state` item (this worker's info)."""
        with self._lock:
            flag = self._flags.setdefault(spec.id, threading.Event())
        events: queue.SimpleQueue[tuple[bool, Event]] = queue.SimpleQueue()

        def work() -> None:
            try:
                end = run_job(spec, self.models, self.limits, lambda ev: events.put((False, ev)), flag.is_set)
            except BaseException as exc:  # run_job catches job failures; this is a bug, still an answer
                end = failure_event(spec.id, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            events.put((True, end))

        self._job = spec.id
        thread = threading.Thread(target=work, name=f"job-{spec.id}", daemon=True)
        thread.start()
        try:
            while True:
                done, event = events.get()
                yield event
                if done:
                    break
            self._job = None
            yield {"type": STATE, **self.info()}
        finally:
            flag.set()  # the gateway stopped listening (cancelled the stream): stop the job too
            thread.join()
            self._job = None
            with self._lock:
                self._flags.pop(spec.id, None)
