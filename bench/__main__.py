"""``python -m bench``: run every benchmark and print its ratios."""

from bench.hot_hit import main

raise SystemExit(main())
