"""``python -m par_prompt ...`` runs the ``par-prompt`` command line."""

import sys

from .cli import main

sys.exit(main())
