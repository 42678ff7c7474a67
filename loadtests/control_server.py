"""The load test's control: a bare aiohttp server answering the scenario's requests with
the proxy's own answers, recorded once and replayed from memory.

Run under the same Locust load right after the proxy, it shows what this machine and the
load generator cost by themselves: a latency the control has too is not the proxy's.
Every path is recorded before the run (``POST /_record`` with the paths, one per line),
so during it nothing is forwarded; a path never recorded gets a 502, which Locust counts
as a failure. A recorded ETag is honoured (304), like the proxy's revalidation.

    python -m loadtests.control_server --origin http://127.0.0.1:8080 --port 8081
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.cli import new_event_loop

# The headers of a recorded answer replayed as they came; aiohttp writes the rest itself.
_HOP_HEADERS = {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding"}
_ORIGIN = web.AppKey("origin", str)
_RECORDED = web.AppKey("recorded", dict)


async def replay(request: web.Request) -> web.Response:
    gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    recorded = request.app[_RECORDED].get((request.path_qs, gzip))
    if recorded is None:
        return web.Response(status=502, text=f"not recorded: {request.path_qs}")
    status, body, headers = recorded
    asked = request.headers.get("If-None-Match")
    if status == 200 and asked is not None and asked == headers.get("ETag"):
        # A 304 has no body to decode: a Content-Encoding on it makes clients fail (as the
        # proxy's own 304 carries none).
        return web.Response(
            status=304, headers={k: v for k, v in headers.items() if k.lower() != "content-encoding"}
        )
    return web.Response(status=status, body=body, headers=headers)


async def record(request: web.Request) -> web.Response:
    paths = [line for line in (await request.text()).splitlines() if line]
    recorded = request.app[_RECORDED]
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for path in paths:
            for gzip in (False, True):
                headers = {"Accept-Encoding": "gzip, deflate, br"} if gzip else {}
                async with session.get(request.app[_ORIGIN] + path, headers=headers) as resp:
                    kept = CIMultiDict(
                        (k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS
                    )
                    recorded[(path, gzip)] = (resp.status, await resp.read(), kept)
    return web.json_response({"recorded": len(recorded)})


def make_app(origin: str) -> web.Application:
    app = web.Application()
    app[_ORIGIN] = origin.rstrip("/")
    app[_RECORDED] = {}
    app.router.add_post("/_record", record)
    app.router.add_get("/{tail:.*}", replay)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--origin", required=True, help="the proxy whose answers are recorded")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The proxy's own loop ([server] event_loop's default), so the control differs from it
    # only by what the proxy does.
    loop = new_event_loop("auto")
    web.run_app(
        make_app(args.origin), host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    main()
