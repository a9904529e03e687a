"""``python -m lightly_temperature``: the ``lightly-temperature`` command."""

import sys

from lightly_temperature.cli import main

sys.exit(main())
