"""Upstream resilience: error taxonomy, rate limiting, retry, timeouts, circuit breaker."""
