"""A worker that is a Ray actor on some GPU host, seen from the gateway: jobs go in through the object
store, their events stream back one by one as the actor yields them, cancel is a call beside the
running job, and any failure of the actor, its process or its host surfaces as `WorkerLost`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from .. import __version__
from .actor import STATE
from .base import TERMINAL, Emit, Event, JobSpec, WorkerInfo, WorkerLost

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 300.0  # a new actor imports torch and scans the models folder before its first answer


class RemoteWorker:
    def __init__(self, handle: Any, slot: tuple[str, int]) -> None:
        self.handle = handle
        self.slot = slot  # (Ray node id, GPU slot on that node): where a replacement goes if it dies
        self.info = WorkerInfo(id=f"ray:{slot[0][:8]}/{slot[1]}", host="?", device="?", state="starting")
        self._resident: set[str] = set()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the actor answers (it loads torch and discovers models first). Raises WorkerLost."""
        state = self._call("info", timeout=timeout)
        self._refresh(state)
        if state["version"] != __version__:  # pickled jobs and events must mean the same on both sides
            raise WorkerLost(f"{self.info.id} on {self.info.host} runs sdbridge {state['version']}, not {__version__}")
        self.info.state = "idle"

    def execute(self, spec: JobSpec, emit: Emit, cancel: threading.Event) -> Event:
        import ray

        terminal: Event | None = None
        try:
            stream = self.handle.run.remote(ray.put(spec))
            for ref in stream:
                event = ray.get(ref)
                if event["type"] == STATE:
                    self._refresh(event)
                elif event["type"] in TERMINAL:
                    terminal = event
                else:
                    emit(event)
        except ray.exceptions.RayError as exc:
            raise WorkerLost(f"{self.info.id} on {self.info.host}: {type(exc).__name__}") from exc
        if terminal is None:  # the stream ended without an answer: treat the worker as gone
            raise WorkerLost(f"{self.info.id} ended job {spec.id} without a result")
        return terminal

    def cancel(self, job_id: str) -> None:
        self.handle.cancel.remote(job_id)  # fire and forget: the job ends at its next step

    def is_resident(self, model: str) -> bool:
        return model in self._resident

    def alive(self, timeout: float = 10.0) -> bool:
        try:
            self._refresh(self._call("info", timeout=timeout))
            return True
        except WorkerLost:
            return False

    def close(self) -> None:
        import ray

        try:
            ray.kill(self.handle)
        except Exception:  # already gone, or Ray itself is shutting down
            log.debug("killing %s failed", self.info.id, exc_info=True)

    def _call(self, method: str, timeout: float) -> dict[str, Any]:
        import ray

        try:
            return ray.get(getattr(self.handle, method).remote(), timeout=timeout)
        except ray.exceptions.RayError as exc:
            raise WorkerLost(f"{self.info.id}: {type(exc).__name__}: {exc}") from exc

    def _refresh(self, state: dict[str, Any]) -> None:
        self.info.host = state["host"]
        self.info.device = state["device"]
        self.info.pid = state["pid"]
        self.info.resident = list(state["resident"])
        self._resident = set(state["resident"])
