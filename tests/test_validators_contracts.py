"""Futures symbols as Yahoo writes them, listed cycles, last trading days, expired and
never-listed contracts, roll windows and rollover detection on continuous series."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from proxy.series import Bars
from validators.contracts import (
    EXPIRED_GRACE_S,
    MONTH_CODES,
    NOT_FOUND,
    PRODUCTS,
    Continuous,
    Contract,
    check_contract,
    detect_rollovers,
    parse_contract,
    roll_windows,
)
from validators.ohlc import check_ohlc
from validators.report import Severity


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp())


NOW = utc(2026, 9, 27, 20)  # the recordings' Sunday


def day_of(ts: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date()


@pytest.mark.parametrize(("code", "month"), [(c, i + 1) for i, c in enumerate("FGHJKMNQUVXZ")])
def test_every_month_code_parses(code: str, month: int) -> None:
    contract = parse_contract(f"CL{code}27.NYM")
    assert isinstance(contract, Contract)
    assert (contract.root, contract.month, contract.year, contract.exchange) == ("CL", month, 2027, "NYM")
    assert contract.month_code == code
    assert check_contract(contract.symbol, NOW) is None  # crude lists every month


@pytest.mark.parametrize(
    ("symbol", "root", "exchange"),
    [("ESZ26.CME", "ES", "CME"), ("CLF27.NYM", "CL", "NYM"), ("GCG27.CMX", "GC", "CMX"),
     ("ZNH27.CBT", "ZN", "CBT"), ("YMZ26.CBT", "YM", "CBT"), ("6EZ26.CME", "6E", "CME"),
     ("MNQZ26.CME", "MNQ", "CME"), ("rtyz26.cme", "RTY", "CME")],
)  # fmt: skip
def test_yahoo_dated_symbols_parse_and_are_live(symbol: str, root: str, exchange: str) -> None:
    contract = parse_contract(symbol)
    assert isinstance(contract, Contract)
    assert (contract.root, contract.exchange, contract.product) == (root, exchange, PRODUCTS[root])
    assert check_contract(symbol, NOW) is None


@pytest.mark.parametrize(
    "symbol", ["AAPL", "^GSPC", "EURUSD=X", "BRK-B", "ESZ26", "ESZ2026", "ESZ26.XYZ", "ESA26.CME", "", "=F"]
)
def test_non_futures_symbols_are_none(symbol: str) -> None:
    assert parse_contract(symbol) is None
    assert check_contract(symbol, NOW) is None


def test_continuous_symbols_parse_and_are_never_a_problem() -> None:
    es = parse_contract("es=f")
    assert es == Continuous("ES=F", "ES", PRODUCTS["ES"])
    unknown = parse_contract("XYZ=F")
    assert isinstance(unknown, Continuous) and unknown.product is None
    assert check_contract("ES=F", NOW) is None


def test_an_unknown_root_cannot_be_judged() -> None:
    contract = parse_contract("KCZ26.NYM")
    assert isinstance(contract, Contract) and contract.product is None
    assert contract.last_trading_day() is None
    assert check_contract("KCZ26.NYM", NOW) is None


@pytest.mark.parametrize("root", ["ES", "NQ", "YM", "RTY", "MES", "MNQ", "ZT", "ZF", "ZN", "ZB"])
def test_quarterly_products_never_listed_other_months(root: str) -> None:
    exchange = PRODUCTS[root].exchange
    for code in MONTH_CODES:
        problem = check_contract(f"{root}{code}27.{exchange}", NOW)
        if code in "HMUZ":
            assert problem is None or problem.reason == "not_listed_yet"  # Treasuries list 3 quarters
        else:
            assert problem is not None and problem.reason == "never_listed"
            assert code in problem.detail
            assert (problem.http_status, problem.message) == (404, NOT_FOUND)


def test_a_contract_on_the_wrong_exchange_was_never_listed() -> None:
    problem = check_contract("ESZ26.NYM", NOW)
    assert problem is not None and problem.reason == "never_listed"
    assert "CME" in problem.detail


def test_gold_lists_off_cycle_months_only_when_nearby() -> None:
    assert check_contract("GCX26.CMX", NOW) is None  # November 2026: two months ahead
    assert check_contract("GCZ26.CMX", NOW) is None
    later = check_contract("GCH27.CMX", NOW)  # March 2027: off-cycle and not yet near
    assert later is not None and later.reason == "not_listed_yet"
    assert check_contract("GCJ27.CMX", NOW) is None  # April is in the cycle
    gone = check_contract("GCH26.CMX", NOW)  # was near in early 2026, has expired since
    assert gone is not None and gone.reason == "expired"


@pytest.mark.parametrize(
    ("symbol", "last_day"),
    [
        ("ESZ25.CME", dt.date(2025, 12, 19)),  # third Friday
        ("ESH26.CME", dt.date(2026, 3, 20)),
        ("CLH26.NYM", dt.date(2026, 2, 20)),  # 3 business days before Feb 25
        ("CLK26.NYM", dt.date(2026, 4, 21)),  # Apr 25 is a Saturday: 4 business days before
        ("NGH26.NYM", dt.date(2026, 2, 25)),  # 3rd-last business day of February
        ("GCZ26.CMX", dt.date(2026, 12, 29)),  # 3rd-last business day of December
        ("ZNH26.CBT", dt.date(2026, 3, 20)),  # 7 business days before Mar 31
        ("ZTH26.CBT", dt.date(2026, 3, 31)),  # last business day
        ("ZFU26.CBT", dt.date(2026, 9, 30)),
        ("6EH26.CME", dt.date(2026, 3, 16)),  # 2 business days before the third Wednesday
    ],
)
def test_last_trading_days_follow_the_exchange_rules(symbol: str, last_day: dt.date) -> None:
    contract = parse_contract(symbol)
    assert isinstance(contract, Contract)
    assert contract.last_trading_day() == last_day


def test_expired_after_the_grace_period() -> None:
    end_of_last_day = utc(2025, 12, 20)  # ESZ25 traded until 2025-12-19
    assert check_contract("ESZ25.CME", end_of_last_day + EXPIRED_GRACE_S - 1) is None
    problem = check_contract("ESZ25.CME", end_of_last_day + EXPIRED_GRACE_S + 1)
    assert problem is not None
    assert (problem.reason, problem.http_status, problem.message) == ("expired", 404, NOT_FOUND)
    assert "2025-12-19" in problem.detail
    assert check_contract("ESZ25.CME", end_of_last_day + 1, grace_s=0) is not None


def test_contracts_beyond_the_listing_horizon_are_not_listed_yet() -> None:
    problem = check_contract("ESZ36.CME", NOW)
    assert problem is not None and problem.reason == "not_listed_yet"
    assert check_contract("CLZ36.NYM", NOW) is None  # crude lists a decade ahead
    assert check_contract("ZNZ27.CBT", NOW) is not None  # Treasuries: three quarters only


def test_equity_index_roll_windows_surround_each_quarterly_expiry() -> None:
    windows = roll_windows("ES=F", utc(2026, 1, 1), utc(2026, 12, 31))
    assert len(windows) == 4
    for (start, end), month in zip(windows, (3, 6, 9, 12), strict=True):
        friday = PRODUCTS["ES"].expiry(2026, month)
        assert day_of(start) == friday - dt.timedelta(days=10)
        assert day_of(end) == friday + dt.timedelta(days=2)  # end of expiry + 1 day
        assert start < utc(friday.year, friday.month, friday.day - 8) < end  # the Thursday a week before


def test_monthly_products_roll_every_month_and_metals_before_first_notice() -> None:
    assert len(roll_windows("CL", utc(2026, 1, 1), utc(2026, 12, 31))) == 12
    gold = roll_windows("GC", utc(2026, 1, 1), utc(2026, 12, 31))
    starts = [day_of(start) for start, _ in gold]
    assert [d.month for d in starts] == [1, 3, 5, 7, 9, 11]  # before Feb Apr Jun Aug Oct Dec
    assert all(start.day >= 15 for start in starts)


def test_roll_windows_of_unknown_roots_or_empty_spans_are_empty() -> None:
    assert roll_windows("XYZ", utc(2026, 1, 1), utc(2026, 12, 31)) == []
    assert roll_windows("ES", utc(2026, 12, 31), utc(2026, 1, 1)) == []


def es_hourly(start: int, hours: int, *, shift_at: int | None = None, by: float = 0.0) -> Bars:
    rng = np.random.default_rng(11)
    close = 6000.0 + np.cumsum(rng.normal(0, 1.5, hours))
    if shift_at is not None:
        close[shift_at:] += by
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + rng.uniform(0, 1.5, hours)
    low = np.minimum(open_, close) - rng.uniform(0, 1.5, hours)
    ts = start + 3600 * np.arange(hours, dtype=np.int64)
    return Bars(ts, open_, high, low, close, rng.integers(20_000, 40_000, hours).astype(np.int64))


def test_a_rollover_jump_in_es_is_info_and_never_a_spike() -> None:
    """ES=F switched from ESH26 to ESM26 (about -50 points of carry) a week before expiry."""
    start = utc(2026, 3, 2)
    bars = es_hourly(start, 24 * 14, shift_at=24 * 10, by=-50.0)  # jump on Thursday Mar 12
    result = detect_rollovers(bars, "ES")
    [issue] = result.issues
    assert (issue.code, issue.severity, issue.count) == ("contract.rollover", Severity.INFO, 1)
    assert issue.start == bars.ts[24 * 10]
    assert result.bad.size == 0
    windows = roll_windows("ES", int(bars.ts[0]), int(bars.ts[-1]))
    prices = check_ohlc(bars, roll_windows=windows)
    assert [i.code for i in prices.issues] == ["contract.rollover"]
    assert prices.bad.size == 0


def test_the_same_jump_mid_quarter_is_no_rollover() -> None:
    bars = es_hourly(utc(2026, 4, 20), 24 * 14, shift_at=24 * 7, by=-50.0)
    assert detect_rollovers(bars, "ES").issues == ()
    assert detect_rollovers(Bars.empty(), "ES").issues == ()
