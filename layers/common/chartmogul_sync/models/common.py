"""Field types and base classes shared by every model.

Two kinds of model live here: those that parse what outside systems send (Stripe JSON, ChartMogul answers,
queue messages from another version of ourselves) ignore fields they do not know, so an API that grows a field
never breaks parsing; those we build and send (ChartMogul import objects) forbid unknown fields, so a typo in our
own code fails loudly instead of being dropped.
"""

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, Strict, StringConstraints

# ISO 4217 active codes. ChartMogul accepts "a 3-letter ISO 4217 code from its supported list"
# (docs/sources.md#cm-transport, Money); its exact list is not published in what we could read, so we
# accept every active ISO code and let the API refuse the rare one it does not support.
ISO_4217_CODES = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF
    CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY
    TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


def _known_currency(code: str) -> str:
    if code not in ISO_4217_CODES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code (upper-case, e.g. 'USD')")
    return code


def _as_utc(moment: datetime) -> datetime:
    # Most moments arrive in UTC already (Stripe's epoch seconds): no new object for them.
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


CurrencyCode = Annotated[str, StringConstraints(min_length=3, max_length=3), AfterValidator(_known_currency)]
"""Upper-case ISO 4217 code. Lower-case input (Stripe's 'usd') is refused: the transform upper-cases it."""

Cents = Annotated[int, Strict()]
"""Money in integer minor units; a float or a string is a bug upstream, never silently rounded."""

# The bound is checked by pydantic-core itself (no Python call per value: the transform builds thousands a second).
NonNegativeCents = Annotated[int, Strict(), Field(ge=0)]

# Stripe sends times as Unix seconds. A time before the epoch, or after 2100 (a time in milliseconds, 13 digits,
# is one), is not a plausible Stripe time and is refused: `datetime.fromtimestamp` would overflow or, worse, a
# value in the wrong unit would be mapped to a wrong date.
MAX_UNIX_SECONDS = 4_102_444_800  # 2100-01-01T00:00:00Z
UnixSeconds = Annotated[int, Strict(), Field(ge=0, lt=MAX_UNIX_SECONDS)]

StrictInt = Annotated[int, Strict()]
"""An amount or count as Stripe sends it: a JSON integer. `true` (a lax int would read 1), 1.5 or "1" are refused."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_as_utc)]
"""A timezone-aware moment, normalised to UTC; a naive datetime is refused (its zone would be a guess)."""

NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class InboundModel(BaseModel):
    """Parses data from outside: unknown fields are ignored, never an error."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OutboundModel(BaseModel):
    """Built by us and sent on: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def lists_beside_the_customer(model: BaseModel) -> list[str]:
    """The names of a snapshot's or a bundle's list fields that hold anything: what a customer head (its
    `customer_only`, docs/architecture.md "Customer heads") must not carry. Read off the model's fields, so a list
    added to the model later is covered too.

        lists_beside_the_customer(bundle)  # a bundle with invoices and their plans: ['plans', 'invoices']
    """
    return [name for name in type(model).model_fields if isinstance(value := getattr(model, name), list) and value]
