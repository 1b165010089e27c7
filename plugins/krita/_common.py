"""Where the shared client lives: vendored as the top-level `sdbridge_common` in the built plugin's
`_vendor/` (on sys.path once the package is imported; the GIMP plug-in vendors it under the same
name), or `plugins.common` in a repository checkout. The star import brings in every module the
shared package lists in its `__all__`, under the same names in both places."""

from __future__ import annotations

try:
    from sdbridge_common import *  # type: ignore[import-not-found]  # noqa: F403
except ImportError:  # repository checkout
    from plugins.common import *  # noqa: F403

Option = choices.Option  # noqa: F405
