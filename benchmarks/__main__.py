"""``python -m benchmarks``: run the fan-out benchmark (``--help`` for the options)."""

import sys

from benchmarks.run import main

sys.exit(main())
