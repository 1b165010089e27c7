#!/usr/bin/env python3
"""sdbridge GIMP 3 plug-in entry point.

GIMP runs `plug-ins/sdbridge/sdbridge.py` (folder and file share the name; the file must be
executable). Everything else lives next to it: `sdbridge_gimp/` (this plug-in) and `vendor/`
(the shared client plus pure-Python websockets and msgpack, copied there by the build).
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.join(_HERE, "vendor")]
# The vendored msgpack has no compiled extension for GIMP's Python: say so instead of probing.
os.environ.setdefault("MSGPACK_PUREPYTHON", "1")

from sdbridge_gimp.plugin import main  # noqa: E402

main(sys.argv)
