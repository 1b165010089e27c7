"""Run one job on one device's models: the job kind's `run`, with progress (throttled previews), partial
tiles and plans sent through `emit`, and its terminal event returned. Every worker runs jobs through
here, in this process or in a Ray actor, so a job behaves the same wherever it runs."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from .. import images
from ..errors import Cancelled, JobError
from ..jobs import KINDS
from ..jobs.base import JobContext, JobResult, ResultFormat, ResultImage
from ..limits import Limits
from ..models.registry import ModelManager
from ..pipelines.preview import Preview
from ..protocol import ProtocolError, error_event
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


def rect_event(img: ResultImage, fmt: ResultFormat) -> Event:
    px = img.pixels
    h, w = px.shape[:2]
    rect: Event = {"x": img.x, "y": img.y, "w": w, "h": h}
    if fmt == "rgba8":
        rect |= {"format": "rgba8", "data": images.rgba8_bytes(px)}
    elif fmt == "webp":
        rect |= {"format": "webp", "data": images.encode_webp(px)}
    else:
        rect |= {"format": "png", "data": images.encode_png(px)}
    if img.seed is not None:
        rect["seed"] = img.seed
    if img.name is not None:
        rect["name"] = img.name
    return rect


def result_event(job_id: str, result: JobResult, fmt: ResultFormat) -> Event:
    ev: Event = {
        "type": "result",
        "id": job_id,
        "images": [rect_event(img, fmt) for img in result.images],
        "params": result.params | {"result_format": fmt},  # every kind reports the encoding it used
    }
    if result.canvas is not None:
        ev["canvas"] = {"w": result.canvas[0], "h": result.canvas[1]}
    return ev


def failure_event(job_id: str, exc: Exception) -> Event:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        with contextlib.suppress(Exception):  # best effort on a device that may be gone
            torch.cuda.empty_cache()
        return error_event("out_of_memory", f"the GPU ran out of memory: {exc}. Try a smaller size or batch.", job_id)
    log.exception("job %s failed", job_id)
    return error_event("job_failed", f"{type(exc).__name__}: {exc}", job_id)
