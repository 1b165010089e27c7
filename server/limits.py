"""Server limits: every size a client controls is bounded here (and advertised in `welcome`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 256 << 20  # a 4096² rgba8 canvas is 64 MiB; leave room for masks
    max_pixels: int = 4096 * 4096  # largest output canvas of a job
    max_image_pixels: int = 8192 * 8192  # largest decoded input image (decompression-bomb guard)
    max_batch: int = 8
    max_steps: int = 150
    max_queued_per_client: int = 32
    result_retention_s: int = 600
    max_retained_bytes: int = 1 << 30
    chunk_bytes: int = 1 << 20
    image_cache_bytes: int = 512 << 20  # uploaded images held by content hash (LRU beyond this)
    # A running live frame is interrupted at its next step when a newer frame of its client waits and
    # it is older than this; younger ones finish, so a steady stroke still gets pictures back.
    live_interrupt_ms: int = 1500

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
