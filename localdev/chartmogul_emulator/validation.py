"""Request checks that answer the way ChartMogul does (docs/sources.md#cm-transport, #cm-invoices, #cm-validation).

Two kinds of failure, as in the real API (docs/sources.md#cm-validation):
- `SchemaError` → 400 `{"code":400,"message":"Parameter \\"x\\" does not have a valid value","param":"x"}`:
  a wrong JSON type, a value outside an enumeration, an unparseable date. Only the first one is reported.
- field errors → 422 in the legacy Import-API shape `{"errors": {field: message}}` (collected by the caller).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# docs/sources.md#cm-transport: ISO 4217 codes. ChartMogul's exact supported list is not readable offline; this is the
# active ISO 4217 list, which is what an integration can legitimately send.
ISO_CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
    CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
    TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMW ZWL""".split()
)

# docs/sources.md#cm-transport: the accepted date forms.
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")


class SchemaError(ValueError):
    """A 400-class problem with one parameter (docs/sources.md#cm-validation)."""

    def __init__(self, param: str, message: str | None = None) -> None:
        super().__init__(message or f'Parameter "{param}" does not have a valid value')
        self.param = param
        self.message = message or f'Parameter "{param}" does not have a valid value'


def parse_timestamp(value: Any) -> dt.datetime | None:
    """`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`, ISO 8601 with or without zone → aware UTC; otherwise None.

    docs/sources.md#cm-transport: zone defaults to UTC and time to 00:00:00; offsets are converted to UTC.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not (_DATE_ONLY.match(text) or _DATE_TIME.match(text)):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def format_timestamp(moment: dt.datetime) -> str:
    """docs/sources.md#cm-transport: import objects answer millisecond UTC, `2023-08-25T10:53:47.000Z`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_event_timestamp(moment: dt.datetime) -> str:
    """docs/sources.md#cm-subscription-events: subscription events answer `2022-02-16T00:00:00Z`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_metrics_timestamp(moment: dt.datetime) -> str:
    """docs/sources.md#cm-subscriptions/#cm-metrics: the metrics views answer `2016-02-24T00:00:00+00:00`."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SchemaError(param)
    return value


def expect_type(body: dict[str, Any], key: str, kind: type | tuple[type, ...], param: str) -> None:
    """400 when `key` is present and not null but of the wrong JSON type (bool is not an integer)."""
    value = body.get(key)
    if value is None:
        return
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise SchemaError(param)
    if not isinstance(value, kinds):
        raise SchemaError(param)


def expect_enum(body: dict[str, Any], key: str, allowed: tuple[str, ...], param: str) -> None:
    value = body.get(key)
    if value is not None and value not in allowed:
        raise SchemaError(param)


def expect_timestamp(body: dict[str, Any], key: str, param: str) -> dt.datetime | None:
    """None when absent; 400 when present but not one of the accepted forms."""
    value = body.get(key)
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise SchemaError(param)
    return parsed
