"""The load test's control server records an origin's answers once and replays them: the
same status, body and headers for each path and encoding, 304 only for the recorded ETag,
and a 502 (a Locust failure) for a path never recorded, with nothing forwarded meanwhile."""

from __future__ import annotations

import gzip
from typing import Any

from aiohttp import web

from loadtests.control_server import make_app
from loadtests.workload import BAD_INPUT_PATH, dashboard_loads, every_path, history_loads


async def test_control_replays_recorded_answers_without_asking_the_origin(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    asked: list[str] = []

    async def origin(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        if request.query.get("interval") == "4m":
            return web.Response(status=400, body=b'{"chart":{"error":{"code":"Bad Request"}}}')
        body = f'{{"path":"{request.path_qs}"}}'.encode()
        headers = {"ETag": '"e1"', "Cache-Status": "yfproxy; hit"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            return web.Response(body=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"})
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", origin)
    server = await aiohttp_server(app)
    control = await aiohttp_client(make_app(str(server.make_url(""))))
    paths = [dashboard_loads()[0][1], BAD_INPUT_PATH]
    recorded = await control.post("/_record", data="\n".join(paths))
    assert (await recorded.json()) == {"recorded": 4}  # each path, plain and gzip
    assert len(asked) == 4

    plain = await control.get(paths[0], headers={"Accept-Encoding": "identity"})
    assert plain.status == 200 and plain.headers["Cache-Status"] == "yfproxy; hit"
    assert await plain.read() == f'{{"path":"{paths[0]}"}}'.encode()
    zipped = await control.get(paths[0], headers={"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.status == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert await zipped.read() == await plain.read()  # the client decompressed the recorded gzip
    bad = await control.get(paths[1], headers={"Accept-Encoding": "identity"})
    assert bad.status == 400

    same = await control.get(paths[0], headers={"If-None-Match": '"e1"', "Accept-Encoding": "identity"})
    assert same.status == 304
    revalidated = await control.get(paths[0], headers={"If-None-Match": '"e1"', "Accept-Encoding": "gzip"})
    assert revalidated.status == 304 and "Content-Encoding" not in revalidated.headers
    assert await revalidated.read() == b""  # nothing the client would try to decompress
    other = await control.get(paths[0], headers={"If-None-Match": '"e2"', "Accept-Encoding": "identity"})
    assert other.status == 200
    never = await control.get("/v8/finance/chart/ZZ=F?interval=1d&range=1d")
    assert never.status == 502
    assert len(asked) == 4  # replaying forwarded nothing


def test_every_path_covers_the_scenario() -> None:
    paths = every_path(1_790_000_000)
    assert len(paths) == len(set(paths))
    assert {path for _name, path in dashboard_loads()} <= set(paths)
    assert {path for _name, path in history_loads("ES=F", 1_790_000_000)} <= set(paths)
    assert BAD_INPUT_PATH in paths and "/v8/finance/chart/NOPE50?interval=1d&range=5d" in paths


def test_the_comparison_shows_each_sides_failures(tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from loadtests import run_load

    header = "Type,Name,Request Count,Failure Count,50%,95%,99%\n"
    (tmp_path / "locust_stats.csv").write_text(
        header + "GET,chart 1m,100,0,1,2,3\nGET,Aggregated,100,0,1,2,3\n"
    )
    (tmp_path / "locust_control_stats.csv").write_text(header + "GET,chart 1m,90,66,1,2,4\n")
    monkeypatch.setattr(run_load, "REPORTS", tmp_path)
    table = run_load.compare()
    assert table["chart 1m"]["control"]["failures"] == 66 and table["chart 1m"]["yfproxy"]["failures"] == 0
    assert "1/2/4, 66" in capsys.readouterr().out  # a failing control cannot pass unnoticed
