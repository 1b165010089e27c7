"""Editor-agnostic sdbridge client shared by the Krita and GIMP plugins.

Depends only on the standard library, `websockets` and `msgpack` (pure-Python copies are vendored
into the built plugins). The wire rules live in exactly one place, `server/protocol.py` (see `_wire`).

Modules: `jobs` (typed requests: the contract), `client` (threaded connection) over `jobstate`
(sans-I/O job tracking), `actions` (canvas + settings -> request), `results` (result -> layers),
`settings`, `geometry`, `pixels`, `png`. Import the ones you use; this package imports nothing itself
(`from ... import *` imports every module below: an editor adapter's one-line shim).
"""

__all__ = [
    "actions",
    "choices",
    "client",
    "control_layers",
    "geometry",
    "history",
    "jobs",
    "jobstate",
    "live",
    "messages",
    "pixels",
    "png",
    "regions",
    "results",
    "settings",
    "unfinished",
    "uploads",
]
