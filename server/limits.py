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
    max_queued_per_client: int = 32  # per client id (token-scoped), over all its connections
    max_queued_total: int = 512  # all clients together
    result_retention_s: int = 600
    max_retained_bytes: int = 1 << 30  # result files kept in the state dir for `fetch`
    chunk_bytes: int = 1 << 20
    # Memory: what one connection may have waiting to be sent, and how long it may sit over that
    # without draining before it is disconnected (its jobs keep running and stay fetchable).
    max_outbox_bytes: int = 16 << 20
    drain_timeout_s: float = 30.0
    max_connections: int = 64
    max_upload_bytes: int = 1 << 30  # partial uploads (blobs) plus frames being parsed, all connections

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
