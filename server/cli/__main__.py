"""`python -m server.cli …` runs the `sdbridge` command line."""

import sys

from . import main

sys.exit(main())
