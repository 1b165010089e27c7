"""Editor-agnostic sdbridge client shared by the Krita and GIMP plugins.

Depends only on the standard library, `websockets` and `msgpack` (pure-Python copies are vendored
into the built plugins). The wire rules live in exactly one place, `server/protocol.py`: the build
copies it here as `_protocol`; when running from the repository we import the original. `Rect`
likewise: `tiling/geometry.py`, copied as `_geometry` (see `geometry.py`).
"""

from __future__ import annotations

try:
    from . import _protocol as protocol  # vendored copy inside a built plugin
except ImportError:  # running from the repository checkout
    from server import protocol  # type: ignore[no-redef]

# Submodules are imported eagerly so `common.actions` etc. work as attributes. `client` only
# imports websockets when its worker thread starts.
from . import actions, client, geometry, jobs, pixels, png, settings  # noqa: E402

__all__ = ["actions", "client", "geometry", "jobs", "pixels", "png", "protocol", "settings"]
