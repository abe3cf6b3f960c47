"""``python -m mla``: the same as the ``mla`` command."""
import sys

from mla.cli import main

sys.exit(main())
