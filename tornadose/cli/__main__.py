"""``python -m tornadose.cli``: the ``tornadose`` command."""

from tornadose.cli import main

raise SystemExit(main())
