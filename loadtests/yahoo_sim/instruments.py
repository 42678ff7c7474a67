"""The simulator's symbol universe: every symbol it answers for, with the metadata Yahoo
reports for it and the parameters of its synthetic price path.

Continuous futures, equities, indices, one FX pair and two non-US equities are listed
statically; dated futures contracts (``ESZ26.CME``) are built on demand from the product
table, valid only for months the product lists and only until they expire."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Literal
from zoneinfo import ZoneInfo

InstrumentType = Literal["EQUITY", "ETF", "INDEX", "FUTURE", "CURRENCY"]


@dataclass(frozen=True)
class DividendPlan:
    """Regular dividends: ex-dates on the first session on/after ``day`` of each month in
    ``months``; each year's amount is ``annual_yield / len(months)`` of that year's first
    price, so amounts stay flat through a year like real declarations do."""

    months: tuple[int, ...]
    day: int
    annual_yield: float
    first_year: int


@dataclass(frozen=True)
class Split:
    date: dt.date
    numerator: int
    denominator: int


@dataclass(frozen=True)
class Instrument:
    symbol: str
    instrument_type: InstrumentType
    calendar: str  # key into sessions.CALENDARS
    exchange_name: str
    full_exchange_name: str
    timezone: str  # exchangeTimezoneName; must equal the calendar's time zone
    currency: str
    long_name: str
    short_name: str
    first_trade: dt.date
    base_price: float  # the price level near PRICE_ANCHOR
    drift: float  # log drift per year: history starts lower, like split-adjusted prices do
    vol: float  # annualised volatility of the synthetic path
    tick: float  # prices are quantised to this before the float32 rounding
    price_hint: int
    daily_volume: int  # 0 for instruments Yahoo reports without volume (FX, VIX)
    has_prepost: bool = False
    dividends: DividendPlan | None = None
    splits: tuple[Split, ...] = ()
    price_key: str = ""  # series whose path this one follows; defaults to the symbol
    expiry: dt.date | None = None  # dated futures only
    carry: float = 0.0  # dated futures: yearly basis against the continuous path

    @property
    def path_key(self) -> str:
        return self.price_key or self.symbol

    @property
    def is_equity_like(self) -> bool:
        return self.instrument_type in ("EQUITY", "ETF")


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


_QUARTERLY_FEB = (2, 5, 8, 11)
_QUARTERLY_MAR = (3, 6, 9, 12)


def _us_equity(
    symbol: str,
    exch: tuple[str, str],
    names: tuple[str, str],
    first: str,
    price: float,
    drift: float,
    vol: float,
    volume: int,
    dividends: DividendPlan | None = None,
    splits: tuple[Split, ...] = (),
    kind: InstrumentType = "EQUITY",
) -> Instrument:
    return Instrument(
        symbol=symbol,
        instrument_type=kind,
        calendar="XNYS",
        exchange_name=exch[0],
        full_exchange_name=exch[1],
        timezone="America/New_York",
        currency="USD",
        long_name=names[0],
        short_name=names[1],
        first_trade=_d(first),
        base_price=price,
        drift=drift,
        vol=vol,
        tick=0.01,
        price_hint=2,
        daily_volume=volume,
        has_prepost=True,
        dividends=dividends,
        splits=splits,
    )


_NMS = ("NMS", "NasdaqGS")
_NYQ = ("NYQ", "NYSE")

_EQUITIES = [
    _us_equity(
        "AAPL", _NMS, ("Apple Inc.", "Apple Inc."), "1980-12-12", 255.0, 0.17, 0.28, 50_000_000,
        DividendPlan(_QUARTERLY_FEB, 9, 0.004, 2012), (Split(_d("2020-08-31"), 4, 1),),
    ),
    _us_equity(
        "MSFT", _NMS, ("Microsoft Corporation", "Microsoft Corporation"), "1986-03-13",
        516.0, 0.15, 0.25, 22_000_000, DividendPlan(_QUARTERLY_FEB, 19, 0.007, 2003),
    ),
    _us_equity(
        "IBM", _NYQ, ("International Business Machines Corporation", "International Business Machines"),
        "1962-01-02", 225.0, 0.07, 0.25, 4_100_000, DividendPlan(_QUARTERLY_FEB, 8, 0.03, 1962),
    ),
    _us_equity(
        "NVDA", _NMS, ("NVIDIA Corporation", "NVIDIA Corporation"), "1999-01-22", 180.0, 0.30, 0.50,
        180_000_000, DividendPlan(_QUARTERLY_MAR, 10, 0.005, 2012),
        (Split(_d("2021-07-20"), 4, 1), Split(_d("2024-06-10"), 10, 1)),
    ),
    _us_equity(
        "AMZN", _NMS, ("Amazon.com, Inc.", "Amazon.com, Inc."), "1997-05-15", 220.0, 0.25, 0.35, 40_000_000
    ),
    _us_equity(
        "GOOGL", _NMS, ("Alphabet Inc.", "Alphabet Inc."), "2004-08-19", 245.0, 0.18, 0.30, 30_000_000,
        DividendPlan(_QUARTERLY_MAR, 9, 0.0035, 2024),
    ),
    _us_equity(
        "TSLA", _NMS, ("Tesla, Inc.", "Tesla, Inc."), "2010-06-29", 440.0, 0.35, 0.60, 95_000_000
    ),
    _us_equity(
        "BRK-B", _NYQ, ("Berkshire Hathaway Inc.", "Berkshire Hathaway Inc. New"), "1996-05-09",
        490.0, 0.10, 0.18, 4_000_000,
    ),
    _us_equity(
        "SPY", ("PCX", "NYSEArca"), ("SPDR S&P 500 ETF Trust", "SPDR S&P 500"), "1993-01-29", 660.0,
        0.08, 0.16, 70_000_000, DividendPlan(_QUARTERLY_MAR, 20, 0.012, 1993), kind="ETF",
    ),
]  # fmt: skip


def _index(
    symbol: str, exch: tuple[str, str], name: str, first: str, price: float, drift: float, vol: float,
    volume: int,
) -> Instrument:  # fmt: skip
    return Instrument(
        symbol=symbol,
        instrument_type="INDEX",
        calendar="XNYS",
        exchange_name=exch[0],
        full_exchange_name=exch[1],
        timezone="America/New_York",
        currency="USD",
        long_name=name,
        short_name=name,
        first_trade=_d(first),
        base_price=price,
        drift=drift,
        vol=vol,
        tick=0.01,
        price_hint=2,
        daily_volume=volume,
    )


_INDICES = [
    _index("^GSPC", ("SNP", "SNP"), "S&P 500", "1927-12-30", 6600.0, 0.065, 0.16, 5_000_000_000),
    _index("^NDX", ("NIM", "Nasdaq GIDS"), "NASDAQ 100", "1985-10-01", 24500.0, 0.11, 0.22, 4_000_000_000),
    _index("^VIX", ("CXI", "Cboe Indices"), "CBOE Volatility Index", "1990-01-02", 17.0, 0.0, 0.90, 0),
]


@dataclass(frozen=True)
class FuturesProduct:
    root: str
    suffix: str  # exchange suffix of dated contracts, also Yahoo's exchangeName
    calendar: str
    timezone: str
    name: str
    months: str  # month codes the product lists
    expiry_rule: str  # see _expiry()
    horizon_years: float  # how far ahead contracts are listed
    first: str
    price: float
    drift: float
    vol: float
    tick: float
    price_hint: int
    volume: int
    carry: float


MONTH_CODES = "FGHJKMNQUVXZ"
_FULL_EXCHANGE = {"CME": "CME", "CBT": "CBOT", "NYM": "NY Mercantile", "CMX": "COMEX"}  # as Yahoo names them
_QUARTERLY = "HMUZ"

PRODUCTS: dict[str, FuturesProduct] = {
    p.root: p
    for p in [
        FuturesProduct("ES", "CME", "CME_Equity", "America/New_York", "E-Mini S&P 500", _QUARTERLY,
                       "third_friday", 1.5, "2000-09-18", 6650.0, 0.06, 0.16, 0.25, 2, 1_500_000, 0.015),
        FuturesProduct("NQ", "CME", "CME_Equity", "America/New_York", "Nasdaq 100", _QUARTERLY,
                       "third_friday", 1.25, "2000-09-18", 24700.0, 0.10, 0.22, 0.25, 2, 500_000, 0.015),
        FuturesProduct("YM", "CBT", "CME_Equity", "America/New_York", "Mini Dow Jones Indus.-$5",
                       _QUARTERLY, "third_friday", 1.25, "2002-04-04", 46000.0, 0.05, 0.15, 1.0, 0,
                       150_000, 0.015),
        FuturesProduct("RTY", "CME", "CME_Equity", "America/New_York", "E-mini Russell 2000 Index Futur",
                       _QUARTERLY, "third_friday", 1.25, "2017-07-10", 2450.0, 0.04, 0.22, 0.1, 1,
                       150_000, 0.015),
        FuturesProduct("CL", "NYM", "CMEGlobex_Crude", "America/New_York", "Crude Oil", MONTH_CODES,
                       "crude", 8.0, "2000-08-23", 63.0, 0.02, 0.35, 0.01, 2, 300_000, -0.02),
        FuturesProduct("NG", "NYM", "CMEGlobex_NatGas", "America/New_York", "Natural Gas", MONTH_CODES,
                       "natgas", 12.0, "2000-08-30", 2.9, 0.0, 0.60, 0.001, 3, 150_000, 0.04),
        FuturesProduct("GC", "CMX", "CMEGlobex_Gold", "America/New_York", "Gold", "GJMQVZ",
                       "metals", 5.0, "2000-08-30", 3750.0, 0.08, 0.18, 0.1, 1, 200_000, 0.03),
        FuturesProduct("SI", "CMX", "CMEGlobex_Silver", "America/New_York", "Silver", "FHKNUZ",
                       "metals", 5.0, "2000-08-30", 45.0, 0.06, 0.30, 0.005, 3, 80_000, 0.03),
        FuturesProduct("HG", "CMX", "CMEGlobex_Copper", "America/New_York", "Copper", "HKNUZ",
                       "metals", 5.0, "2000-08-30", 4.6, 0.05, 0.25, 0.0005, 4, 60_000, 0.01),
        FuturesProduct("ZN", "CBT", "CME_Bond", "America/Chicago", "10-Year T-Note", _QUARTERLY,
                       "treasury", 0.75, "2000-09-21", 112.5, 0.0, 0.06, 1 / 64, 4, 1_500_000, 0.0),
        FuturesProduct("ZB", "CBT", "CME_Bond", "America/Chicago", "U.S. Treasury Bond Futures",
                       _QUARTERLY, "treasury", 0.75, "2000-09-21", 116.0, 0.0, 0.12, 1 / 32, 4,
                       300_000, 0.0),
        FuturesProduct("ZF", "CBT", "CME_Bond", "America/Chicago", "Five-Year US Treasury Note Futu",
                       _QUARTERLY, "treasury", 0.75, "2000-09-21", 109.0, 0.0, 0.04, 1 / 128, 4,
                       700_000, 0.0),
        FuturesProduct("ZT", "CBT", "CME_Bond", "America/Chicago", "2-Year T-Note Futures", _QUARTERLY,
                       "treasury", 0.75, "2000-09-21", 104.0, 0.0, 0.015, 1 / 256, 4, 500_000, 0.0),
        FuturesProduct("6E", "CME", "CMEGlobex_FX", "America/New_York", "Euro FX", _QUARTERLY,
                       "fx_imm", 1.75, "2000-09-18", 1.17, 0.0, 0.07, 0.00005, 5, 200_000, 0.0),
    ]
}  # fmt: skip


def _continuous(product: FuturesProduct) -> Instrument:
    return Instrument(
        symbol=f"{product.root}=F",
        instrument_type="FUTURE",
        calendar=product.calendar,
        exchange_name=product.suffix,
        full_exchange_name=_FULL_EXCHANGE[product.suffix],
        timezone=product.timezone,
        currency="USD",
        long_name=product.name,
        short_name=product.name,
        first_trade=_d(product.first),
        base_price=product.price,
        drift=product.drift,
        vol=product.vol,
        tick=product.tick,
        price_hint=product.price_hint,
        daily_volume=product.volume,
    )


_OTHERS = [
    Instrument(
        symbol="EURUSD=X",
        instrument_type="CURRENCY",
        calendar="FX24",
        exchange_name="CCY",
        full_exchange_name="CCY",
        timezone="Europe/London",
        currency="USD",
        long_name="EUR/USD",
        short_name="EUR/USD",
        first_trade=_d("2003-12-01"),
        base_price=1.17,
        drift=0.0,
        vol=0.07,
        tick=0.00001,
        price_hint=4,
        daily_volume=0,
    ),
    Instrument(
        symbol="7974.T",
        instrument_type="EQUITY",
        calendar="XTKS",
        exchange_name="JPX",
        full_exchange_name="Tokyo",
        timezone="Asia/Tokyo",
        currency="JPY",
        long_name="Nintendo Co., Ltd.",
        short_name="NINTENDO CO LTD",
        first_trade=_d("2001-01-04"),
        base_price=8100.0,
        drift=0.08,
        vol=0.35,
        tick=1.0,
        price_hint=2,
        daily_volume=6_000_000,
        dividends=DividendPlan((3, 9), 27, 0.015, 2001),
    ),
    Instrument(
        symbol="BATS.L",
        instrument_type="EQUITY",
        calendar="XLON",
        exchange_name="LSE",
        full_exchange_name="LSE",
        timezone="Europe/London",
        currency="GBp",
        long_name="British American Tobacco p.l.c.",
        short_name="BRITISH AMERICAN TOBACCO PLC OR",
        first_trade=_d("1995-01-03"),
        base_price=4180.0,
        drift=0.06,
        vol=0.25,
        tick=1.0,
        price_hint=2,
        daily_volume=3_000_000,
        dividends=DividendPlan((3, 6, 10, 12), 27, 0.07, 1995),
    ),
]

STATIC: dict[str, Instrument] = {
    i.symbol: i for i in [*_EQUITIES, *_INDICES, *(_continuous(p) for p in PRODUCTS.values()), *_OTHERS]
}

_DATED = re.compile(
    r"^(?P<root>[A-Z0-9]{2,3}?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{2})\.(?P<suffix>[A-Z]{3})$"
)


def lookup(symbol: str, today: dt.date) -> Instrument | None:
    """The instrument for a symbol (any case), or None when Yahoo would answer 404.
    ``today`` (the simulator clock's date) decides whether a dated contract has expired."""
    upper = symbol.strip().upper()
    found = STATIC.get(upper)
    if found is not None:
        return found
    return dated_contract(upper, today)


def lookup_at(symbol: str, now: float) -> Instrument | None:
    """``lookup`` on the simulator clock's New York date (contracts expire on US dates)."""
    return lookup(symbol, dt.datetime.fromtimestamp(now, ZoneInfo("America/New_York")).date())


def dated_contract(symbol: str, today: dt.date) -> Instrument | None:
    match = _DATED.match(symbol)
    if match is None:
        return None
    product = PRODUCTS.get(match["root"])
    if product is None or product.suffix != match["suffix"] or match["month"] not in product.months:
        return None
    year = 2000 + int(match["year"])
    month = MONTH_CODES.index(match["month"]) + 1
    expiry = contract_expiry(product, year, month)
    listed_from = expiry - dt.timedelta(days=round(product.horizon_years * 365.25))
    if not listed_from <= today <= expiry:
        return None  # expired, or too far out to be listed yet: Yahoo has no chart for it
    month_name = dt.date(year, month, 1).strftime("%b")
    base = _continuous(product)
    return replace(
        base,
        symbol=symbol,
        long_name=f"{product.name} {month_name} {year % 100:02d}",
        short_name=f"{product.name} {month_name} {year % 100:02d}",
        first_trade=max(base.first_trade, listed_from),
        price_key=base.symbol,
        expiry=expiry,
        carry=product.carry,
        daily_volume=base.daily_volume // 2,
    )


def contract_expiry(product: FuturesProduct, year: int, month: int) -> dt.date:
    """Last trading day, close to each exchange's rule (holidays are ignored: the date only
    decides listing and expiry, never a session)."""
    rule = product.expiry_rule
    if rule == "third_friday":
        return _nth_weekday(year, month, 4, 3)
    if rule == "fx_imm":  # two business days before the third Wednesday
        return _nth_weekday(year, month, 2, 3) - dt.timedelta(days=2)
    if rule == "crude":  # about three business days before the 25th of the previous month
        prev = dt.date(year, month, 1) - dt.timedelta(days=1)
        return _weekday_on_or_before(dt.date(prev.year, prev.month, 20))
    if rule == "natgas":  # three business days before the first of the month
        return _weekday_on_or_before(dt.date(year, month, 1) - dt.timedelta(days=4))
    if rule == "metals":  # third-last business day of the month
        return _weekday_on_or_before(dt.date(year, month, 27))
    return _weekday_on_or_before(dt.date(year, month, 20))  # treasury notes and bonds


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + dt.timedelta(days=offset + 7 * (n - 1))


def _weekday_on_or_before(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day


def all_symbols() -> list[str]:
    return sorted(STATIC)
