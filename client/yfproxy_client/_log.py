"""The one way this package talks to the user: a single line on stderr."""

from __future__ import annotations

import contextlib
import sys


def warn(message: str) -> None:
    """Print ``yfproxy-client: <message>`` to stderr; never raises.

    Used from the ``.pth`` hook and from inside other libraries' imports, where an
    exception would break an unrelated program; stderr may even be None (pythonw).
    """
    stream = sys.stderr
    if stream is None:
        return
    with contextlib.suppress(Exception):  # a closed or broken stderr is not our problem
        print(f"yfproxy-client: {message}", file=stream)
