"""yfproxy-client: point unmodified yfinance code at a yfproxy server.

    import yfproxy_client
    yfproxy_client.install("http://127.0.0.1:8080")

or, with no code at all, ``export YFPROXY_URL=http://127.0.0.1:8080`` (see README).
"""

from ._patch import install, installed_url, uninstall

__version__ = "0.1.0"
__all__ = ["__version__", "install", "installed_url", "uninstall"]
