"""``python -m warpd.capture run|proxy …``: the capture commands, until they join ``warpd``."""

from __future__ import annotations

import sys

from warpd.capture.command import main

sys.exit(main(sys.argv[1:]))
