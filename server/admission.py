"""Who may connect, and how much the server takes in at once: Origin policy, the connection cap, the
per-peer back-off after wrong tokens, and the global budget of upload bytes in flight.

Browsers always send `Origin` on a websocket handshake and plugins, the CLI and scripts send none,
so refusing every Origin that `--allow-origin` does not name keeps web pages (including DNS-rebinding
ones) from driving a server on loopback without affecting any of our clients.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .limits import Limits

FREE_FAILURES = 5  # wrong tokens a peer may send before it has to wait
MAX_LOCKOUT_S = 60.0
FORGET_AFTER_S = 600.0  # a peer's failures are forgotten after this long without one
MAX_PEERS = 10_000  # peers remembered (oldest forgotten first), so the table itself stays bounded


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class Admission:
    def __init__(self, limits: Limits, allow_origins: Iterable[str] = ()) -> None:
        self.limits = limits
        self.allow_origins = frozenset(o.rstrip("/") for o in allow_origins)
        self.connections = 0
        self.upload_bytes = 0
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    # --- before the websocket handshake ------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' hook: a browser page whose Origin is not allowed gets 403 and no websocket."""
        origin = request.headers.get("Origin")
        if origin is None or origin.rstrip("/") in self.allow_origins:
            return None
        connection.logger.warning("refused a connection from Origin %s", origin)
        return connection.respond(
            HTTPStatus.FORBIDDEN,
            f"Origin {origin} may not use this server: browsers are refused unless it runs with --allow-origin.\n",
        )

    # --- connections -------------------------------------------------------------------------------

    def open(self) -> bool:
        if self.connections >= self.limits.max_connections:
            return False
        self.connections += 1
        return True

    def closed(self) -> None:
        self.connections -= 1

    # --- tokens ------------------------------------------------------------------------------------

    def locked_for(self, peer: str) -> float:
        """Seconds `peer` must still wait before its next token is even looked at (0: go ahead)."""
        entry = self._failures.get(peer)
        return 0.0 if entry is None else max(0.0, entry.locked_until - time.monotonic())

    def auth_failed(self, peer: str) -> None:
        now = time.monotonic()
        entry = self._failures.pop(peer, None) or _Failures()
        if now - entry.last > FORGET_AFTER_S:
            entry = _Failures()
        entry.count += 1
        entry.last = now
        if entry.count >= FREE_FAILURES:
            entry.locked_until = now + min(2.0 ** (entry.count - FREE_FAILURES), MAX_LOCKOUT_S)
        self._failures[peer] = entry  # most recent last
        while len(self._failures) > MAX_PEERS:
            self._failures.popitem(last=False)

    def auth_ok(self, peer: str) -> None:
        self._failures.pop(peer, None)

    # --- upload bytes ------------------------------------------------------------------------------

    def take_upload(self, n: int) -> bool:
        """Reserve `n` bytes of the global in-flight upload budget; False when it would go over."""
        if n > 0 and self.upload_bytes + n > self.limits.max_upload_bytes:
            return False
        self.upload_bytes += n
        return True

    def give_upload(self, n: int) -> None:
        self.upload_bytes -= n
