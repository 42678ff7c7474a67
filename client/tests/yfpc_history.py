"""Run by the tests in a fresh interpreter: unmodified yfinance code fetching history.

    python yfpc_history.py CACHE_DIR START END [--install URL]

Prints one JSON object: the rows, what yfproxy_client reports, which HTTP stack the
yfinance session used, which HTTP libraries were imported at start, and any attempt to
leave 127.0.0.1 (blocked by yfpc_netguard, which also guards libcurl).
"""

from __future__ import annotations

import argparse
import json
import sys

import yfpc_netguard


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("cache_dir")
    parser.add_argument("start")
    parser.add_argument("end")
    parser.add_argument("--install", metavar="URL")
    args = parser.parse_args()

    at_start = sorted(name for name in ("requests", "curl_cffi") if name in sys.modules)
    yfpc_netguard.install()
    if args.install:
        import yfproxy_client

        yfproxy_client.install(args.install)

    import yfinance as yf
    from yfinance.data import YfData

    yf.set_tz_cache_location(args.cache_dir)
    frame = yf.Ticker("MSFT").history(start=args.start, end=args.end, interval="1d")

    client = sys.modules.get("yfproxy_client")
    print(
        json.dumps(
            {
                "rows": [[str(ts.date()), row.Close, int(row.Volume)] for ts, row in frame.iterrows()],
                "installed_url": client.installed_url() if client else None,
                "session": type(YfData(session=None)._session).__module__,  # old and new SingletonMeta alike
                "imported_at_start": at_start,
                "violations": yfpc_netguard.violations,
            }
        )
    )


if __name__ == "__main__":
    main()
