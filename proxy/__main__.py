"""``python -m proxy`` is the ``yfproxy`` command."""

import sys

from proxy.cli import main

sys.exit(main())
