"""``python -m warpd`` is the ``warpd`` command."""

import sys

from warpd.cli.main import main

sys.exit(main())
