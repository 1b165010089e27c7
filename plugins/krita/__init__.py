"""sdbridge Krita plugin entry point (pykrita imports this package by its X-KDE-Library name).

Bundled pure-Python `websockets`/`msgpack` live in `_vendor/`. If they are missing or broken
(e.g. someone installed the source tree instead of a built zip) the plugin still loads and its
docker explains what is wrong instead of failing silently.
"""

from __future__ import annotations

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

DEPS_ERROR: str | None = None
try:
    import msgpack  # noqa: F401
    from websockets.asyncio.client import connect  # noqa: F401  (websockets >= 13 API)
except Exception as exc:  # ImportError, or an old system websockets without .asyncio
    where = "bundled in " + _VENDOR if os.path.isdir(_VENDOR) else "not bundled (no _vendor folder)"
    DEPS_ERROR = (
        f"sdbridge cannot load its network libraries ({type(exc).__name__}: {exc}); they should be {where}. "
        "Install the plugin from a zip built with `python -m plugins.build krita`, not from the source folder."
    )

try:
    from krita import Krita  # only inside Krita
except ImportError:
    Krita = None

# The plugin's one Controller, for scripts and tests: `import sdbridge; sdbridge.CONTROLLER.pending`.
CONTROLLER = None
if Krita is not None:
    from .extension import register

    CONTROLLER = register(DEPS_ERROR)
