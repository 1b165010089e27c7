"""Run one job on one device's models: the job kind's `run`, with progress (throttled previews), partial
tiles and plans sent through `emit`, and its terminal event returned. Every worker runs jobs through
here, in this process or in a Ray actor, so a job behaves the same wherever it runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .. import images
from ..errors import Cancelled, JobError
from ..jobs import KINDS
from ..jobs.base import JobContext
from ..limits import Limits
from ..models.registry import ModelManager
from ..pipelines.preview import Preview
from ..protocol import ProtocolError, error_event
from ..results import failure_event, rect_event, result_event
from .base import Emit, Event, JobSpec

log = logging.getLogger(__name__)
PREVIEW_INTERVAL_S = 0.25


def run_job(spec: JobSpec, models: ModelManager, limits: Limits, emit: Emit, cancelled: Callable[[], bool]) -> Event:
    """→ the job's terminal event; a failure of the job never escapes (the worker goes on)."""
    fmt = spec.request.result_format
    ctx = JobContext(
        models=models,
        limits=limits,
        progress=progress_sender(spec.id, spec.preview_formats, emit),
        cancelled=cancelled,
        partial=lambda img: emit({"type": "partial", "id": spec.id, "image": rect_event(img, fmt)}),
        plan=lambda plan: emit({"type": "plan", "id": spec.id, **plan}),
    )
    try:
        if cancelled():
            raise Cancelled
        return result_event(spec.id, KINDS[spec.kind].run(spec.request, ctx), fmt)
    except Cancelled:
        return {"type": "cancelled", "id": spec.id}
    except (ProtocolError, JobError) as exc:
        return error_event(exc.code, exc.message, spec.id)
    except Exception as exc:  # a job failure must never take the worker down
        return failure_event(spec.id, exc)
    finally:
        models.end_job()  # LoRA patches / VAE overrides never leak into the next job


def progress_sender(job_id: str, formats: tuple[str, ...], emit: Emit) -> Callable[[int, int, Preview], None]:
    """A job's `progress` callback: a progress event per step, with a preview at most every
    PREVIEW_INTERVAL_S (they cost an encode and bandwidth, and nobody watches 30 fps) and at the last step."""
    last_preview = float("-inf")  # the first step always previews

    def progress(step: int, total: int, preview: Preview) -> None:
        nonlocal last_preview
        ev: Event = {"type": "progress", "id": job_id, "step": step, "total": total}
        now = time.monotonic()
        if preview is not None and (now - last_preview >= PREVIEW_INTERVAL_S or step == total):
            last_preview = now
            pixels = preview() if callable(preview) else preview  # lazy: made only when sent
            thumb = images.preview_thumbnail(pixels)
            kind, data = images.encode_preview(thumb, formats)
            ev["preview"] = {"format": kind, "data": data, "w": thumb.shape[1], "h": thumb.shape[0]}
        emit(ev)

    return progress
