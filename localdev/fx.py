"""The fixed exchange-rate table the emulator's metrics and the generator's ground truth share.

ChartMogul converts each foreign-currency line at the rate of its service-period start; offline we have no
rate feed, so both sides use this one table (account currency: USD). Pass another table to the emulator at
start to model a different account.
"""

from chartmogul_sync.audit.mrr_rules import round_cents  # one rounding rule for the emulator and the truth

__all__ = ["ACCOUNT_CURRENCY", "DEFAULT_RATES", "round_cents", "to_account_currency"]

ACCOUNT_CURRENCY = "USD"

# Units of the account currency per unit of the line's currency.
DEFAULT_RATES: dict[str, float] = {
    "USD": 1.0,
    "EUR": 1.10,
    "GBP": 1.25,
    "CAD": 0.73,
    "AUD": 0.66,
}


def to_account_currency(amount_in_cents: float, currency: str, rates: dict[str, float] | None = None) -> float:
    """Convert minor units of `currency` to minor units of the account currency.

    Every currency in the table has two decimals, so minor units convert at the same rate as major ones.
    """
    table = DEFAULT_RATES if rates is None else rates
    try:
        return amount_in_cents * table[currency.upper()]
    except KeyError:
        raise ValueError(f"no exchange rate for currency {currency!r}; known: {sorted(table)}") from None
