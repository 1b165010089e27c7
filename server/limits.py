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
    max_regions: int = 8  # regional prompts per job: each adds a text encoding and attention per cross-attention layer
    result_retention_s: int = 600
    max_retained_bytes: int = 1 << 30
    chunk_bytes: int = 1 << 20

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
