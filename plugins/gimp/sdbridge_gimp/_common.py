"""Import shim for the shared client (`plugins/common`).

Inside a built plug-in the build copies it to `vendor/sdbridge_common` (a name that cannot collide
with anything else on GIMP's Python path); from a repository checkout (unit tests) it is
`plugins.common`.
"""

from __future__ import annotations

try:
    from sdbridge_common import (  # type: ignore[import-not-found]
        actions,
        choices,
        client,
        geometry,
        jobs,
        jobstate,
        regions,
        results,
        settings,
    )
except ImportError:  # repository checkout
    from plugins.common import actions, choices, client, geometry, jobs, jobstate, regions, results, settings

ActionError = actions.ActionError  # the user-facing error: its message is shown to the user as-is

__all__ = [
    "ActionError",
    "actions",
    "choices",
    "client",
    "geometry",
    "jobs",
    "jobstate",
    "regions",
    "results",
    "settings",
]
