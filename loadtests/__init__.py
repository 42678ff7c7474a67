"""Load tests, runners and the Yahoo Finance simulator (a fake upstream with fault knobs)."""
