"""Futures contracts as Yahoo names them: which dated contracts exist, when they expire,
and when the continuous series (``ES=F``) switches from one to the next.

Symbols: continuous ``ROOT=F`` (``ES=F``, ``6E=F``); dated ``ROOT`` + month code + two-digit
year + Yahoo's exchange suffix (``ESZ26.CME``, ``CLF27.NYM``, ``GCG27.CMX``, ``ZNH27.CBT``).
Yahoo does not use four-digit years, and a dated symbol without suffix (``ESZ26``) could be a
stock ticker, so both parse as "not futures". Years are 2000 + yy.

Products are one data table, ``PRODUCTS``; a product lists its ``cycle`` months as far as
``horizon_months`` ahead and, for some, every calendar month for the ``nearby`` months from
now (gold: the current month and the next two). A month outside the cycle of a product
without nearby months was never listed. Horizons are generous upper bounds: a contract
beyond them cannot exist yet, one inside them may still be missing on Yahoo.

Last trading days follow the exchanges' rules, counted in weekdays (no holiday calendars,
so a holiday can make the real day one or two business days earlier than computed here):

- equity index (ES NQ YM RTY MES MNQ): third Friday of the contract month;
- CL: 3 business days before the 25th of the month before the contract month (4 when the
  25th is not a business day); NG: 3rd-last business day of the month before;
- COMEX metals (GC SI HG): 3rd-last business day of the contract month;
- ZN, ZB: 7th business day before the last business day of the contract month;
  ZT, ZF: last business day of the contract month;
- 6E: 2 business days before the third Wednesday of the contract month.

A contract is *expired* ``EXPIRED_GRACE_S`` after the end of its last trading day (UTC).
Roll windows: Yahoo's continuous series switches near the front contract's last trading
day for cash-settled and energy products; for delivered products (metals, Treasuries)
volume moves to the next contract before first notice, about the end of the month before
the contract month, so their window opens ``roll_before_days`` before that instead.
Windows are generous on purpose: they only decide whether a persistent jump is labelled a
rollover (ohlc never counts a persistent jump as a spike anyway).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from proxy.series import Bars
from validators.ohlc import find_moves, rollover_issues
from validators.report import CheckResult

MONTH_CODES = "FGHJKMNQUVXZ"  # January .. December
ALL_MONTHS = MONTH_CODES
QUARTERLY = "HMUZ"
YAHOO_SUFFIXES = ("CME", "NYM", "CMX", "CBT")
NOT_FOUND = "No data found, symbol may be delisted"  # Yahoo's own 404 description
EXPIRED_GRACE_S = 7 * 86_400
DAY_S = 86_400

ExpiryRule = Callable[[int, int], dt.date]  # (year, month) -> last trading day


def _is_business(day: dt.date) -> bool:
    return day.weekday() < 5


def _business_days_before(day: dt.date, count: int) -> dt.date:
    """The business day ``count`` business days before ``day`` (not counting ``day``)."""
    while count:
        day -= dt.timedelta(days=1)
        count -= _is_business(day)
    return day


def _last_business_day(year: int, month: int) -> dt.date:
    return _business_days_before(_month_start(year, month + 1), 1)


def _month_start(year: int, month: int) -> dt.date:
    """First day of a month, with months beyond 1..12 rolling into the next/previous years."""
    y, m = divmod(year * 12 + month - 1, 12)
    return dt.date(y, m + 1, 1)


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))


def third_friday(year: int, month: int) -> dt.date:
    return _nth_weekday(year, month, 4, 3)


def crude_oil(year: int, month: int) -> dt.date:
    prior = _month_start(year, month - 1)
    the_25th = prior.replace(day=25)
    return _business_days_before(the_25th, 3 if _is_business(the_25th) else 4)


def natural_gas(year: int, month: int) -> dt.date:
    prior = _month_start(year, month - 1)
    return _business_days_before(_last_business_day(prior.year, prior.month), 2)


def comex_metal(year: int, month: int) -> dt.date:
    return _business_days_before(_last_business_day(year, month), 2)


def long_treasury(year: int, month: int) -> dt.date:
    return _business_days_before(_last_business_day(year, month), 7)


def short_treasury(year: int, month: int) -> dt.date:
    return _last_business_day(year, month)


def fx(year: int, month: int) -> dt.date:
    return _business_days_before(_nth_weekday(year, month, 2, 3), 2)


@dataclass(frozen=True, slots=True)
class Product:
    root: str
    exchange: str  # Yahoo's suffix for dated contracts
    name: str
    cycle: str  # month codes listed out to horizon_months
    expiry: ExpiryRule
    calendar: str  # pandas_market_calendars name, a hint for the calendars module
    horizon_months: int
    nearby: int = 0  # consecutive calendar months listed from now, whatever their code
    roll_cycle: str = ""  # months the continuous series holds; "" = the cycle
    roll_before_first_notice: bool = False  # delivered: volume rolls before first notice day
    roll_before_days: int = 10
    roll_after_days: int = 1

    @property
    def held_months(self) -> str:
        return self.roll_cycle or self.cycle


def _equity(root: str, name: str) -> Product:
    return Product(root, "CME" if root != "YM" else "CBT", name, QUARTERLY, third_friday, "CME_Equity", 60)


def _treasury(root: str, name: str, rule: ExpiryRule) -> Product:
    # CBOT lists three consecutive quarters: the furthest is at most 11 months ahead.
    return Product(
        root, "CBT", name, QUARTERLY, rule, "CBOT_InterestRate", 11,
        roll_before_first_notice=True,
    )  # fmt: skip


_PRODUCT_LIST: tuple[Product, ...] = (
    _equity("ES", "E-mini S&P 500"),
    _equity("NQ", "E-mini Nasdaq-100"),
    _equity("YM", "E-mini Dow"),
    _equity("RTY", "E-mini Russell 2000"),
    _equity("MES", "Micro E-mini S&P 500"),
    _equity("MNQ", "Micro E-mini Nasdaq-100"),
    Product("CL", "NYM", "WTI crude oil", ALL_MONTHS, crude_oil, "CMEGlobex_CL", 144,
            roll_before_days=5, roll_after_days=2),
    Product("NG", "NYM", "Henry Hub natural gas", ALL_MONTHS, natural_gas, "CMEGlobex_NG", 156,
            roll_before_days=5, roll_after_days=2),
    Product("GC", "CMX", "Gold", "GJMQVZ", comex_metal, "CMEGlobex_GC", 72,
            nearby=3, roll_before_first_notice=True),
    Product("SI", "CMX", "Silver", "FHKNUZ", comex_metal, "CMEGlobex_SI", 60,
            nearby=3, roll_cycle="HKNUZ", roll_before_first_notice=True),
    Product("HG", "CMX", "Copper", "HKNUZ", comex_metal, "CMEGlobex_HG", 60,
            nearby=24, roll_before_first_notice=True),
    _treasury("ZT", "2-year T-note", short_treasury),
    _treasury("ZF", "5-year T-note", short_treasury),
    _treasury("ZN", "10-year T-note", long_treasury),
    _treasury("ZB", "U.S. Treasury bond", long_treasury),
    Product("6E", "CME", "Euro FX", QUARTERLY, fx, "CMEGlobex_FX", 60, nearby=3),
)  # fmt: skip
PRODUCTS: dict[str, Product] = {p.root: p for p in _PRODUCT_LIST}


@dataclass(frozen=True, slots=True)
class Continuous:
    symbol: str  # e.g. "ES=F"
    root: str
    product: Product | None  # None: a root this table does not know


@dataclass(frozen=True, slots=True)
class Contract:
    symbol: str  # e.g. "ESZ26.CME"
    root: str
    month: int  # 1..12
    year: int
    exchange: str
    product: Product | None

    @property
    def month_code(self) -> str:
        return MONTH_CODES[self.month - 1]

    @property
    def month_index(self) -> int:
        return self.year * 12 + self.month - 1

    def last_trading_day(self) -> dt.date | None:
        return None if self.product is None else self.product.expiry(self.year, self.month)


@dataclass(frozen=True, slots=True)
class ContractProblem:
    reason: Literal["never_listed", "expired", "not_listed_yet"]
    detail: str  # for logs and operators: which rule says so
    message: str = NOT_FOUND  # for the client, worded as Yahoo's own 404
    http_status: int = 404


_CONTINUOUS = re.compile(r"^([A-Z0-9]{1,5})=F$")
_DATED = re.compile(rf"^([A-Z0-9]{{1,5}})([{MONTH_CODES}])(\d\d)\.({'|'.join(YAHOO_SUFFIXES)})$")


def parse_contract(symbol: str) -> Contract | Continuous | None:
    """The futures contract a Yahoo symbol names; None when it is no futures symbol."""
    text = symbol.strip().upper()
    if match := _CONTINUOUS.match(text):
        return Continuous(text, match[1], PRODUCTS.get(match[1]))
    if match := _DATED.match(text):
        root, code, yy, exchange = match.groups()
        month = MONTH_CODES.index(code) + 1
        return Contract(text, root, month, 2000 + int(yy), exchange, PRODUCTS.get(root))
    return None


def check_contract(symbol: str, now: int, *, grace_s: int = EXPIRED_GRACE_S) -> ContractProblem | None:
    """Why Yahoo cannot have data for this dated contract at ``now``; None when it may (or we can't tell)."""
    contract = parse_contract(symbol)
    if not isinstance(contract, Contract) or contract.product is None:
        return None
    product, name = contract.product, contract.symbol
    if contract.exchange != product.exchange:
        return ContractProblem(
            "never_listed", f"{name}: {product.root} trades on {product.exchange}, not {contract.exchange}"
        )
    in_cycle = contract.month_code in product.cycle
    if not in_cycle and not product.nearby:
        return ContractProblem(
            "never_listed",
            f"{name}: {product.name} lists only {' '.join(product.cycle)} months, not {contract.month_code}",
        )
    last_day = product.expiry(contract.year, contract.month)
    if now > _day_end(last_day) + grace_s:
        return ContractProblem("expired", f"{name} expired: its last trading day was {last_day.isoformat()}")
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    ahead = contract.month_index - (today.year * 12 + today.month - 1)
    reach = product.horizon_months if in_cycle else product.nearby - 1
    if ahead > reach:
        what = "contract month" if in_cycle else f"{contract.month_code} month (listed only when nearby)"
        return ContractProblem(
            "not_listed_yet",
            f"{name}: the {what} is {ahead} months ahead, {product.root} lists {reach} at most",
        )
    return None


def roll_windows(root: str, start: int, end: int) -> list[tuple[int, int]]:
    """Unix-second windows around the days the continuous series of ``root`` changes contract,
    for the rolls that touch [start, end]; [] for an unknown root."""
    product = PRODUCTS.get(root.strip().upper().removesuffix("=F"))
    if product is None or end < start:
        return []
    first = dt.datetime.fromtimestamp(start, dt.UTC).date()
    last = dt.datetime.fromtimestamp(end, dt.UTC).date()
    out = []
    # The contract expiring in the window's months can sit up to two months later (CL, NG).
    for index in range(first.year * 12 + first.month - 2, last.year * 12 + last.month + 2):
        year, month0 = divmod(index, 12)
        if MONTH_CODES[month0] not in product.held_months:
            continue
        window = _roll_window(product, year, month0 + 1)
        if window[1] >= start and window[0] <= end:
            out.append(window)
    return out


def _roll_window(product: Product, year: int, month: int) -> tuple[int, int]:
    last_day = product.expiry(year, month)
    if product.roll_before_first_notice:
        prior = _month_start(year, month - 1)
        opens = _last_business_day(prior.year, prior.month)  # about first notice day
    else:
        opens = last_day
    return _day_start(opens) - product.roll_before_days * DAY_S, _day_end(
        last_day
    ) + product.roll_after_days * DAY_S


def detect_rollovers(bars: Bars, root: str) -> CheckResult:
    """INFO ``contract.rollover`` for each level shift of a continuous series inside a roll window.

    ``check_ohlc(bars, roll_windows=roll_windows(...))`` reports the same issues along with the
    price checks; a pipeline runs one of the two, not both.
    """
    if len(bars) == 0:
        return CheckResult()
    ts = np.asarray(bars.ts, dtype=np.int64)
    windows = roll_windows(root, int(ts.min()), int(ts.max()))
    return CheckResult(issues=tuple(rollover_issues(bars, find_moves(bars), windows)))


def _day_start(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _day_end(day: dt.date) -> int:
    return _day_start(day) + DAY_S
