"""yfproxy's service: Yahoo-compatible chart routes answered from Redis, kept fresh in the background."""

__version__ = "0.1.0"
