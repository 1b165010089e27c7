"""Where the shared client lives: bundled as `sdbridge.common` in the built plugin, or
`plugins.common` in a repository checkout (the only two layouts)."""

from __future__ import annotations

try:
    from . import common  # built plugin: sdbridge/common
except ImportError:  # repository checkout: plugins/common next to plugins/krita
    from .. import common  # type: ignore[no-redef]

__all__ = ["common"]
