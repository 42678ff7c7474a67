"""The cold-burst, memory and soak benchmarks at a tiny size, so they do not rot: each
starts the real stack (redis-server, simulator, proxy subprocesses) and must measure
what it claims to, not just run. Together about 35 s."""

from __future__ import annotations

from bench import cold_burst, memory, soak


def test_cold_burst_costs_one_upstream_request_and_answers_everyone() -> None:
    report = cold_burst.run(clients=20, rounds=1, latency_ms=200.0)
    [row] = report["rounds_detail"]
    assert row["upstream_chart_requests"] == 1
    assert row["lone_upstream_chart_requests"] == 1
    assert row["other_upstream_chart_requests"] == 0
    assert row["statuses"] == {200: 20}
    assert row["distinct_bodies"] == 1
    assert row["cache_status"].get("stored", 0) + row["cache_status"].get("hit", 0) >= 1
    assert sum(row["cache_status"].values()) == 20
    # The lone fetch waited on the simulator's 200 ms; so did every client of the burst.
    assert row["lone"]["latency_ms"] >= 200
    assert row["burst_ms"]["p50"] >= 200
    assert 0.5 < row["ratio_to_lone"]["p50"] <= row["ratio_to_lone"]["max"]
    assert report["one_upstream_request_per_burst"] and report["proxy_healthy_after"]


def test_memory_measures_bytes_per_bar_and_rss() -> None:
    report = memory.run(symbols=["ES=F"], intervals=["1m", "1d"], load_seconds=1, connections=4, settle_s=0.3)
    redis = report["redis"]
    assert set(redis["per_series"]) == {"ES=F|1m|0", "ES=F|1d|0"}
    for row in redis["per_series"].values():
        assert row["bars"] > 1000 and row["bytes"] > 0
    # Compressed columns: a few bytes per bar, far below the 48 raw bytes (ts + OHLC + volume).
    assert 1 < redis["bytes_per_bar"] < 48
    assert redis["shared_keys_bytes"] > 0 and "yfp:series-index" in redis["shared_keys"]
    rss = report["proxy_rss_kib"]
    assert 0 < rss["start"] <= rss["after_first_use"]
    assert rss["after_storing"] > 0 and rss["load_peak"] >= rss["after_storing"] - 1024
    assert report["hot_series_after_storing"] >= 2
    assert report["load"]["requests"] > 0 and report["load"]["errors"] == 0


def test_soak_samples_memory_and_errors() -> None:
    report = soak.run(minutes=1 / 6, sample_s=2.0, rps=40.0, symbols=["ES=F", "NQ=F"], intervals=["1m", "1d"])
    samples = report["samples"]
    assert len(samples) >= 5
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert all(s["rss_kib"] > 10_000 and s["redis_used_memory"] > 0 for s in samples)
    assert samples[-1]["client_requests"] >= 0.8 * 40 * 10
    assert report["not_modified"] > 0  # revalidations were sent and answered 304
    verdict = report["verdict"]
    assert verdict["client_errors"] == 0 and verdict["no_proxy_errors"]
    assert verdict["second_half_samples"] >= 3
    assert isinstance(verdict["passed"], bool)
