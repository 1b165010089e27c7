"""What every job kind provides, and what the worker gives it while it runs.

A kind turns a client's `params` + images into one typed, frozen request at submit time (so every
validation error reaches the client before anything is queued), then runs that request on the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, get_args

import numpy as np

from ..limits import Limits
from ..models.registry import ModelManager
from ..pipelines.preview import Preview
from ..protocol import Fields, ImageRef, ProtocolError

ResultFormat = Literal["png", "rgba8", "webp"]
RESULT_FORMATS: tuple[ResultFormat, ...] = get_args(ResultFormat)


@dataclass(frozen=True, kw_only=True)
class Request:
    """What every job request has, whatever its kind (the kinds' requests extend it)."""

    result_format: ResultFormat = "png"  # how the worker encodes the result's (and partials') images


@dataclass(frozen=True)
class ResultImage:
    """One rectangle of a result: RGBA (or RGB) pixels placed at (x, y) of the target canvas."""

    x: int
    y: int
    pixels: np.ndarray
    seed: int | None = None
    name: str | None = None


@dataclass
class JobResult:
    images: list[ResultImage]
    params: dict[str, Any]
    canvas: tuple[int, int] | None = None  # (w, h) when the job changes the canvas size


@dataclass
class JobContext:
    """Handed to `run`: the models, plus callbacks into the queue (all thread-safe)."""

    models: ModelManager
    limits: Limits
    progress: Callable[[int, int, Preview], None]  # a lazy preview is made only if it is sent
    cancelled: Callable[[], bool]
    partial: Callable[[ResultImage], None] = lambda _img: None
    plan: Callable[[dict[str, Any]], None] = lambda _plan: None


@dataclass(frozen=True)
class ParseContext:
    """Handed to `parse`: enough to validate without touching the GPU."""

    models: ModelManager
    limits: Limits
    job_id: str
    decode: Callable[[str, ImageRef], np.ndarray]  # name, ref -> pixels (limits enforced)


class JobKind(Protocol):
    kind: str

    def parse(self, params: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> Request: ...

    def run(self, request: Any, ctx: JobContext) -> JobResult: ...


def parse_request(kind: JobKind, params: Fields, images: Mapping[str, ImageRef], ctx: ParseContext) -> Request:
    """`kind.parse`, plus the fields every request has, read here the same way for every kind."""
    result_format = params.choice("result_format", RESULT_FORMATS, "png")
    return replace(kind.parse(params, images, ctx), result_format=result_format)


def require_image(images: Mapping[str, ImageRef], name: str, ctx: ParseContext) -> np.ndarray:
    if name not in images:
        raise ProtocolError("bad_field", f"images.{name}: missing", ctx.job_id)
    return ctx.decode(name, images[name])
