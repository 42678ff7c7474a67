"""Zero-code activation: imported by ``yfproxy_client.pth`` when ``YFPROXY_URL`` is set.

This runs at the start of every Python process of the environment, so it must never
raise: a bad value costs one warning line on stderr and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ._log import warn

ENV_VAR = "YFPROXY_URL"


def activate(environ: Mapping[str, str] = os.environ) -> bool:
    """Install from ``environ[YFPROXY_URL]``; True if now active. Never raises."""
    value = environ.get(ENV_VAR, "").strip()
    if not value:
        return False
    try:
        from ._patch import install

        install(value)
    except Exception as exc:
        warn(f"{ENV_VAR} ignored: {exc}")
        return False
    return True


activate()
