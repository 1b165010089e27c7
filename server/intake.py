"""Taking jobs in: a `job` frame (or a journaled job, on start) becomes a parsed, journaled `Job`.

Everything a client can get wrong is found here, before anything is queued. The journal keeps what
the client sent (kind, raw params, image bytes) so that a restart parses the job again exactly as now;
a job is in the journal before its client hears `queued`. Upload bytes (partial blobs and frames
being parsed) count against one global budget, so many big uploads at once are refused, not buffered.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import images
from .admission import Admission
from .errors import JobError
from .jobs import KINDS
from .jobs.base import ParseContext, Request, parse_request
from .limits import Limits
from .models.registry import ModelManager
from .protocol import BlobAssembler, Fields, ImageRef, ProtocolError, check_id, error_event, parse_image
from .queue import Job, JobQueue
from .store import Accepted, JobStore

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # runs a journaled job gets before a crash loop ends it with `job_failed`


class Intake:
    def __init__(self, models: ModelManager, limits: Limits, queue: JobQueue, admission: Admission) -> None:
        self.models = models
        self.limits = limits
        self.queue = queue
        self.admission = admission

    # --- from a connection (event loop) -------------------------------------------------------------

    def blob(self, msg: Mapping[str, Any], blobs: BlobAssembler) -> None:
        data = msg.get("data")
        n = len(data) if isinstance(data, bytes) else 0
        self._take(n)
        before = blobs.size
        try:
            blobs.add(msg)
        finally:
            self.admission.give_upload(n - (blobs.size - before))  # keep counted what the assembler kept

    async def submit(
        self,
        owner: str,
        msg: Mapping[str, Any],
        frame_bytes: int,
        blobs: BlobAssembler,
        subscribe: Callable[[str], None],
        preview_formats: tuple[str, ...] = images.DEFAULT_PREVIEW_FORMATS,
    ) -> Job:
        """Validate, parse (off the loop: decoding a large PNG takes a while) and journal one job."""
        job_id = check_id(msg.get("id"))
        f = Fields(msg, "job", job_id)
        kind = f.str("kind", max_len=64)
        if kind not in KINDS:
            raise ProtocolError(
                "unknown_kind", f"unknown job kind {kind!r}; supported: {', '.join(sorted(KINDS))}", job_id
            )
        params = f.map("params", {})
        raw_images = f.map("images", {})
        self.queue.reserve(job_id, owner)
        try:
            self._take(frame_bytes, job_id)
        except ProtocolError:
            self.queue.release(job_id)
            raise
        try:
            refs = {str(name): parse_image(obj, str(name), blobs.done, job_id) for name, obj in raw_images.items()}
            for img in raw_images.values():
                if isinstance(img, dict) and isinstance(img.get("blob"), str):
                    before = blobs.size
                    blobs.drop(img["blob"])
                    self.admission.give_upload(before - blobs.size)
            accepted = Accepted(job_id, owner, kind, params, refs, preview_formats)
            request = await asyncio.to_thread(self._accept, accepted)
        except BaseException:
            self.queue.release(job_id)
            raise
        finally:
            self.admission.give_upload(frame_bytes)
        subscribe(job_id)  # before `submit`, which announces the job's position
        return Job(job_id, kind, request, owner, preview_formats=preview_formats)

    def _take(self, n: int, job_id: str | None = None) -> None:
        if not self.admission.take_upload(n):
            mib = self.limits.max_upload_bytes >> 20
            raise ProtocolError(
                "server_busy", f"the server is receiving {mib} MiB of uploads already: send this again shortly", job_id
            )

    def _accept(self, job: Accepted) -> Request:
        request = self._parse(job.id, job.kind, job.params, job.images)
        store = self.queue.store
        if store is not None:
            try:
                store.add(job)
            except (OSError, sqlite3.Error) as exc:
                raise ProtocolError("storage", f"cannot journal the job in the state dir: {exc}", job.id) from None
        return request

    def _parse(self, job_id: str, kind: str, params: Mapping[str, Any], refs: Mapping[str, ImageRef]) -> Request:
        def decode(name: str, ref: ImageRef) -> Any:
            return images.decode(ref, self.limits.max_image_pixels, name, job_id)

        pctx = ParseContext(self.models, self.limits, job_id, decode)
        try:
            return parse_request(KINDS[kind], Fields(params, "params", job_id), refs, pctx)
        except ProtocolError as exc:
            exc.job_id = exc.job_id or job_id  # helpers deep in parsing don't know the id
            raise
        except JobError as exc:  # from the model layer (unknown model, bad name…): same code and message
            raise ProtocolError(exc.code, exc.message, job_id) from exc

    # --- from the journal (on start, before anyone connects) ---------------------------------------

    def restore(self, store: JobStore) -> None:
        """Finished jobs stay fetchable; accepted, unfinished ones are queued again in their order."""
        for done in store.finished():
            self.queue.retain(Job(done.id, "", None, done.owner, "done", finished_at=done.finished_at, size=done.size))
        requeued = 0
        for stored in store.pending():
            try:
                if stored.kind not in KINDS:
                    raise ProtocolError("unknown_kind", f"this server has no job kind {stored.kind!r}", stored.id)
                if stored.attempts >= MAX_ATTEMPTS:
                    raise ProtocolError(
                        "job_failed",
                        f"the server stopped {stored.attempts} times while running this job: it is not run again",
                        stored.id,
                    )
                request = self._parse(stored.id, stored.kind, stored.params, stored.images)
            except ProtocolError as exc:  # e.g. its model is gone since: it ends with the reason
                event = error_event(exc.code, exc.message, stored.id)
                store.finish(stored.id, event)
                self.queue.retain(Job(stored.id, stored.kind, None, stored.owner, "done", finished_at=time.time()))
                continue
            formats = stored.preview_formats or images.DEFAULT_PREVIEW_FORMATS
            self.queue.submit(Job(stored.id, stored.kind, request, stored.owner, preview_formats=formats))
            requeued += 1
        if requeued:
            log.info("re-queued %d job(s) from the state dir", requeued)
