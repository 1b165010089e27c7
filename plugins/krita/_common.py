"""Where the shared client lives: vendored as the top-level `sdbridge_common` in the built plugin's
`_vendor/` (on sys.path once the package is imported; the GIMP plug-in vendors it under the same
name), or `plugins.common` in a repository checkout."""

from __future__ import annotations

try:
    from sdbridge_common import (  # type: ignore[import-not-found]
        actions,
        choices,
        client,
        control_layers,
        geometry,
        history,
        messages,
        pixels,
        regions,
        results,
        settings,
        unfinished,
    )
except ImportError:  # repository checkout
    from plugins.common import (
        actions,
        choices,
        client,
        control_layers,
        geometry,
        history,
        messages,
        pixels,
        regions,
        results,
        settings,
        unfinished,
    )

Option = choices.Option
__all__ = [
    "Option",
    "actions",
    "choices",
    "client",
    "control_layers",
    "geometry",
    "history",
    "messages",
    "pixels",
    "regions",
    "results",
    "settings",
    "unfinished",
]
