"""yfproxy test suite."""
