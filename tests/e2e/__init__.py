"""End to end: real yfinance, the proxy as a process, the simulator as upstream."""
