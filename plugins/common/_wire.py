"""The wire protocol core, wherever it lives: the build vendors `server/protocol.py` next to this file
as `_protocol`; in a repository checkout the original is imported. One rule, `server/protocol.py`,
for the server, the CLI and both editors."""

from __future__ import annotations

try:
    from . import _protocol as protocol  # vendored copy inside a built plugin
except ImportError:  # running from the repository checkout
    from server import protocol  # type: ignore[no-redef]

__all__ = ["protocol"]
