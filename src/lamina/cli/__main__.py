"""`python -m lamina.cli`: the same as the `lamina` console script."""

import sys

from lamina.cli import main

sys.exit(main())
