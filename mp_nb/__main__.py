"""``python -m mp_nb`` is the ``mp-nb`` command."""

import sys

from .cli import main

sys.exit(main())
