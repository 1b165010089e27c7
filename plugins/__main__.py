"""`python -m plugins krita` is a shortcut for `python -m plugins.build krita`."""

import sys

from plugins.build import main

sys.exit(main())
