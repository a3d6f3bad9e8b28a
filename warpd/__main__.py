"""``python -m warpd`` is the ``warpd`` command."""

import sys

from warpd.cli import main

sys.exit(main())
